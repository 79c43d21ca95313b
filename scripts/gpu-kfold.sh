#!/usr/bin/env bash
# The GPU-scale event DAP (plans/real-events-kfold-sprog-gpu.toml) on one CUDA machine, in one
# bounded run: the guide cache on every CPU core first, then the three folds' training on the GPU
# and their scoring. The baselines' tables are the CPU plan's (plans/real-events-kfold-sprog.toml:
# same events, start times and store versions; the runner reuses a table only when its key matches).
#
#   bash scripts/gpu-kfold.sh                 # from the repository root, stores built (make real-stores)
#
# Environment: BUDGET_S (seconds the DAP may run before it is stopped; default 540), WORKERS
# (guide processes; default all cores), DEVICE (default cuda), OUT (where logs, a tarball of the results and the folds'
# checkpoints are copied; default var/gpu-kfold), PYTHON (default python3), NOWCAST_CODE_COMMIT
# (the commit of a copy without git metadata, recorded in the ledger).
# A stopped run resumes: finished folds and score tables are reused when their inputs match.
set -uo pipefail
start=$(date +%s)
py=${PYTHON:-python3}
out=${OUT:-var/gpu-kfold}
budget=${BUDGET_S:-540}
workers=${WORKERS:-$(env -u OMP_NUM_THREADS nproc)}  # nproc obeys OMP_NUM_THREADS
plan=plans/real-events-kfold-sprog-gpu.toml
res=results/real-events-kfold-sprog-gpu
mkdir -p "$out" "$res/tables"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1

for m in persistence extrapolation sprog; do
  cp -rn "results/real-events-kfold-sprog/tables/$m" "$res/tables/" 2>/dev/null || true
done
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cores $workers"; "$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

t0=$(date +%s)
"$py" -m training.events guides --config configs/train-real-events-sprog-gpu.toml --workers "$workers" --no-progress > "$out/guides.log" 2>&1
echo "guides: rc $? in $(( $(date +%s) - t0 )) s"
tail -3 "$out/guides.log"

left=$(( budget - ($(date +%s) - start) ))
echo "DAP: ${left} s left"
t0=$(date +%s)
timeout "$left" "$py" -m training.dap.events --plan "$plan" --device "${DEVICE:-cuda}" --no-progress > "$out/dap.log" 2>&1
echo "DAP: rc $? in $(( $(date +%s) - t0 )) s"
grep -E "INFO (training|__main__)" "$out/dap.log" | grep -v "selected" | tail -25

tar czf "$out/results.tgz" --exclude='*.pt' "$res"
for d in "$res"/folds/*/; do
  [ -f "$d/best.pt" ] && cp "$d/best.pt" "$out/best-$(basename "$d").pt"
done
ls -la "$out"
echo "total $(( $(date +%s) - start )) s"
