"""Plain `nn.Module` backbones (one per `conf/arch/*.yaml`) and the one LightningModule that trains them.
Rule: knows no data set, QC or run folder beyond the names in runs/metric_keys.py."""
