#!/bin/bash
# The GPU work of one device session, as one command: `bash benchmarks/gpu_session.sh checks` (CUDA tests, kernel
# benchmark, scenario timings: benchmarks/results/gpu_h200.md) or `... scale` (issue 15's attack variants at equal
# CPU cost: benchmarks/results/scale_variants.md); each stage is skipped once the time budget is spent. The device image has torch but
# not opacus, mlxtend, pydantic, dp-accounting: carry their wheels in .gpuwheels/ (pip download --no-deps
# --python-version 3.12 --only-binary=:all: ...).
set -u
PLAN=${1:-checks}; [ "$PLAN" = scale ] && BUDGET=570
export PYTHONPATH=$PWD AUDITKIT_CACHE=/tmp/akcache PYTHONUNBUFFERED=1
W=/tmp/w; mkdir -p $W/r; LOG=$W/r/log.txt
save() { cp benchmarks/results/*cuda* $W/r/ 2>/dev/null; tar czf $OUT/results.tgz -C $W r; }
say() { echo "== [$SECONDS s] $*" | tee -a $LOG; }
python3 -m pip install -q --no-index --no-deps .gpuwheels/*.whl >>$LOG 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a $LOG
python3 -c "import torch, opacus, mlxtend, pydantic, dp_accounting; print(torch.__version__, torch.cuda.get_device_name(), opacus.__version__)" 2>&1 | tee -a $LOG
[ "$PLAN" = checks ] && { say tests; timeout 150 python3 -m pytest -q -x tests/test_cuda.py -p no:cacheprovider 2>&1 | tail -15 | tee -a $LOG; save; }
say smoke; timeout 90 python3 benchmarks/scenario_seeds.py mnist_quick --seeds 0 --device cuda --tag cuda_smoke --set attack.steps=200 2>&1 | tail -8 | tee -a $LOG; save
grep -q "identified" benchmarks/results/mnist_quick_cuda_smoke_seeds.md 2>/dev/null || { say "smoke failed: stop"; exit 1; }
[ "$PLAN" = checks ] && { say kernel; timeout 120 python3 benchmarks/kernel.py --device cuda --m 200 1000 4000 16000 --repeats 5 2>&1 | tail -14 | tee -a $LOG; save; }
run() { local budget=$1 left=$((${BUDGET:-540} - SECONDS)); shift; { [ $SECONDS -gt $budget ] || [ $left -lt 30 ]; } && { say "skip $*"; return; }; say "$*"; timeout $((left < 200 ? left : 200)) python3 benchmarks/scenario_seeds.py "$@" --device cuda 2>&1 | tail -6 | tee -a $LOG; save; }
if [ "$PLAN" = scale ]; then  # victims trained once per seed (a shared cache); cosine = attack.lr_schedule=cosine
C="--cache /tmp/akcache --set attack.lr_schedule=cosine"
R1="--set attack.restarts=1 --set attack.search=off"  # mnist_paper_cpu's attack when these ran
run 500 mnist_paper_cpu --seeds 0 $R1 --tag cuda_cosine $C
run 500 mnist_quick_100 --seeds 0 1 2 --tag cuda_cosine $C
run 500 mnist_paper_cpu --seeds 0 $R1 --tag cuda_s15k_cosine $C --set attack.steps=15000
run 500 mnist_paper_cpu --seeds 0 $R1 --tag cuda_cps4_s7500_cosine $C --set attack.candidates_per_sample=4 --set attack.steps=7500
run 500 mnist_paper_cpu --seeds 0 $R1 --tag cuda_s15k --cache /tmp/akcache --set attack.steps=15000
run 500 mnist_quick --seeds 0 1 2 --tag cuda_cosine $C
run 520 mnist_quick_100 --seeds 0 1 2 --tag cuda_r8_cosine $C --set attack.restarts=8
for split in 2:7500 4:3750 8:1875; do  # the same 15,000 candidate-steps as 1 x 15,000 (run alone in that session)
run 560 mnist_paper_cpu --seeds 0 --tag cuda_r${split%:*}_s${split#*:} --set attack.restarts=${split%:*} --set attack.search=random --set attack.steps=${split#*:}
done
say done; exit 0
fi
run 400 mnist_quick --seeds 0 1 2 --tag cuda
run 400 mnist_quick_100 --seeds 0 1 2 --tag cuda
run 420 mnist_quick_100 --seeds 0 1 2 --tag cuda_compiled --set attack.compile=true  # CUDA graphs: the same search
run 430 mnist_paper_cpu --seeds 0 --tag cuda --set attack.restarts=1 --set attack.search=off
run 450 mnist_quick_100 --seeds 0 1 2 --tag cuda_r8 --set attack.restarts=8
run 470 mnist_paper_cpu --seeds 0 --tag cuda_r4 --set attack.restarts=4 --set attack.steps=8000
run 480 mnist_quick_100 --seeds 0 1 2 --tag cuda_public --set attack.init=public
run 490 mnist_paper_cpu --seeds 0 --tag cuda_s16k --set attack.restarts=1 --set attack.search=off --set attack.steps=16000
run 500 mnist_paper_cpu --seeds 0 --tag cuda_public --set attack.restarts=1 --set attack.search=off --set attack.init=public
say done
