"""Plain `nn.Module` backbones (one per `conf/arch/*.yaml`) and the one LightningModule that trains them."""
