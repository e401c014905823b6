#!/usr/bin/env bash
# The GPU check: what a CPU-only CI cannot see, in one script on a CUDA machine (`make gpu-check`).
#   1. every architecture in conf/arch/ trains one epoch with the default trainer (accelerator=auto);
#   2. the user's sweep (4 archs x none,basic) in smoke mode, on the GPU;
#   3. evaluate, audit and explain on the GPU, on an anti-aliased ResNet-18 run;
#   4. that run's test metrics, evaluated again on the CPU: the largest accuracy difference;
#   5. the 10-run seed sweep (5 archs x none,basic, seed 0) with jobs side by side on the GPU, timed,
#      GPU utilisation sampled every second throughout;
#   6. one ResNet-18 epoch with 0 and 4 data workers: whether workers should be the GPU default.
# Output: outputs/gpu_check/<time>/ (summary.txt, gpu_util.csv, the runs). W&B stays offline.
# FULL=1 also runs the user's sweep as written, no flag added (5 epochs, 8 jobs).
# A rehearsal on a CPU-only machine (the flow, not the figures): REHEARSE=1 adds debug=smoke to every run
# and skips nvidia-smi.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export WANDB_MODE=${WANDB_MODE:-offline} NO_ALBUMENTATIONS_UPDATE=1 HYDRA_FULL_ERROR=1
OUT=${OUT:-outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }
REHEARSE=${REHEARSE:-0}
EXTRA=(); [ "$REHEARSE" = 1 ] && EXTRA=(debug=smoke trainer.accelerator=auto)
train() { "$PY" -m shapeshift.train "$@" "${EXTRA[@]}"; }

say "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
touch "$OUT/gpu_util.csv"
SAMPLER=
if [ "$REHEARSE" != 1 ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs a GPU')"
  say "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > "$OUT/gpu_util.csv" &
  SAMPLER=$!
fi
trap '[ -n "$SAMPLER" ] && kill $SAMPLER 2>/dev/null || true' EXIT
util() {  # mean and max GPU utilisation (%) and max memory (MiB) since line $1 of gpu_util.csv
  tail -n +"$1" "$OUT/gpu_util.csv" | awk -F', ' '{s+=$2; if ($2>m) m=$2; if ($3>mm) mm=$3; n++}
    END {if (n) printf "GPU utilisation mean %.0f%%, max %d%%, memory max %d MiB over %d s", s/n, m, mm, n}'
}
metric() { "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print(m.get(sys.argv[2]))" "$@"; }

say "== 1. every architecture, one epoch, default trainer"
for yaml in conf/arch/*.yaml; do
  arch=$(basename "$yaml" .yaml)
  start=$SECONDS
  train arch="$arch" trainer.max_epochs=1 logger=none hydra.run.dir="$OUT/arch/$arch" > "$OUT/arch_$arch.log" 2>&1
  m="$OUT/arch/$arch/metrics.json"
  say "$arch: $((SECONDS - start)) s, accelerator $(metric "$m" accelerator), precision $(metric "$m" precision)," \
      "deterministic $(metric "$m" deterministic), iid $(metric "$m" test/iid/acc), ood $(metric "$m" test/ood/acc)," \
      "GPU peak $(metric "$m" memory/gpu_peak_mib) MiB"
done

say "== 2. the user's sweep in smoke mode, on the GPU"
start=$SECONDS
"$PY" -m shapeshift.train -m arch=cnn,gap,resnet18,resnet18_aa aug=none,basic debug=smoke trainer.accelerator=auto \
  hydra.sweep.dir="$OUT/smoke_sweep" > "$OUT/smoke_sweep.log" 2>&1
say "$(ls "$OUT"/smoke_sweep/*/metrics.json | wc -l)/8 jobs finished in $((SECONDS - start)) s"

say "== 3. evaluate, audit, explain on the GPU (resnet18_aa)"
RUN="$OUT/arch/resnet18_aa"
"$PY" - "$OUT/images" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
from shapeshift.data.datamodule import ShapesDataModule
dm = ShapesDataModule(n_train_per_class=8, n_val_per_class=8, n_test_per_class=16, cache_dir=None)
images, labels = dm.arrays("test")
for i, (img, label) in enumerate(zip(images, labels)):
    folder = Path(sys.argv[1]) / dm.class_names[label]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / f"{i:03d}.png")
EOF
"$PY" -m shapeshift.evaluate run="$RUN" out=gpu.json accelerator=auto > "$OUT/evaluate.log" 2>&1
"$PY" -m shapeshift.audit run="$RUN" images="$OUT/images" accelerator=auto > "$OUT/audit.log" 2>&1
"$PY" -m shapeshift.explain run="$RUN" accelerator=auto > "$OUT/explain.log" 2>&1
say "evaluate: $(tail -1 "$OUT/evaluate.log")"
say "audit: $(grep -i -m1 'accuracy\|flagged' "$OUT/audit.log" || tail -1 "$OUT/audit.log")"
say "explain: $(tail -1 "$OUT/explain.log")"

say "== 4. the GPU run evaluated again on the CPU"
"$PY" -m shapeshift.evaluate run="$RUN" out=cpu.json accelerator=cpu > "$OUT/evaluate_cpu.log" 2>&1
"$PY" - "$RUN" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
gpu, cpu = (json.loads((run / f).read_text()) for f in ("metrics.json", "cpu.json"))
accs = [k for k in gpu if k.startswith("test/") and k.endswith("/acc") and k in cpu]
diff = max(abs(gpu[k] - cpu[k]) for k in accs)
print(f"{len(accs)} accuracies, trained+tested on {gpu['accelerator']} ({gpu['precision']}) vs tested on the CPU: "
      f"largest difference {diff:.4f}; iid {gpu['test/iid/acc']} vs {cpu['test/iid/acc']}, "
      f"ood {gpu['test/ood/acc']} vs {cpu['test/ood/acc']}")
EOF

say "== 5. the 10-run seed sweep, jobs side by side on the GPU"
line=$(($(wc -l < "$OUT/gpu_util.csv") + 1))
start=$SECONDS
train -m arch=cnn,maxpool,gap,resnet18,resnet18_aa aug=none,basic hydra/launcher=gpu_side_by_side \
  hydra.launcher.n_jobs="${N_JOBS:-5}" logger=none hydra.sweep.dir="$OUT/seed_sweep" > "$OUT/seed_sweep.log" 2>&1
say "$(ls "$OUT"/seed_sweep/*/metrics.json | wc -l)/10 jobs in $((SECONDS - start)) s (n_jobs=${N_JOBS:-5}); $(util "$line")"

say "== 6. data workers on the GPU: do they pay? (resnet18, one epoch; results are identical by construction)"
for workers in 0 4; do
  start=$SECONDS
  train arch=resnet18 trainer.max_epochs=1 logger=none data.num_workers=$workers \
    hydra.run.dir="$OUT/workers/$workers" > "$OUT/workers_$workers.log" 2>&1
  say "num_workers=$workers: $((SECONDS - start)) s, fit $(metric "$OUT/workers/$workers/metrics.json" time/fit_s) s"
done

if [ "${FULL:-0}" = 1 ]; then
  say "== the user's sweep as written"
  start=$SECONDS
  train -m arch=cnn,gap,resnet18,resnet18_aa aug=none,basic hydra.sweep.dir="$OUT/user_sweep" > "$OUT/user_sweep.log" 2>&1
  say "$(ls "$OUT"/user_sweep/*/metrics.json | wc -l)/8 jobs in $((SECONDS - start)) s"
fi
say "done: $SUMMARY"
