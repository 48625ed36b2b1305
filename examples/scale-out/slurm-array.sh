#!/bin/bash
# One cnn-zoo-bench sweep as a Slurm job array: task i measures slice i+1 of 4 into
# $BENCH_ROOT/shard-<i+1>-of-4 (python -m bench run --shard auto), and a second job, started
# only once every task has succeeded (sbatch --dependency=afterok), writes the report of them
# all into $BENCH_ROOT/report. Submit both from a login node, with this project's environment
# active, in a folder every node sees (docs/scale-out.md):
#
#   bash examples/scale-out/slurm-array.sh                     # root: ./results/sweep-<time>
#   BENCH_ROOT=/shared/sweeps/42 bash examples/scale-out/slurm-array.sh
#
# More slices: change --array below (any range A-B[:S]; indices need not start at 0). A GPU
# sweep: --devices cuda and a #SBATCH --gres=gpu:1 line. Every task must run the same plan.
#
#SBATCH --job-name=cnn-zoo-bench
#SBATCH --array=0-3
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --exclusive
#SBATCH --time=04:00:00
#SBATCH --output=%x-%A_%a.out
set -euo pipefail

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    # Run by hand: submit the array (this file), then the report once all of it succeeded.
    root=${BENCH_ROOT:-$PWD/results/sweep-$(date +%Y%m%d-%H%M%S)}
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    array=$(sbatch --parsable --export=ALL,BENCH_ROOT="$root" "$0")
    array=${array%%;*}  # --parsable prints "id" or "id;cluster"
    sbatch --parsable --job-name=cnn-zoo-bench-report --dependency=afterok:"$array" \
        --output="$root/report-%j.out" \
        --wrap="python -m bench report $(printf %q "$root") --out $(printf %q "$root/report")"
    echo "job array $array writes $root/shard-I-of-N; its report follows in $root/report"
    exit 0
fi

# One task of the array: its slice from SLURM_ARRAY_TASK_ID, _COUNT and _MIN (--shard auto).
# --resume: a requeued task continues its slice's folder instead of being refused. Submitted
# with plain `sbatch`, the tasks meet in results/sweep-<array job id> (then run the report).
root=${BENCH_ROOT:-$SLURM_SUBMIT_DIR/results/sweep-$SLURM_ARRAY_JOB_ID}
python -m bench run --full --devices cpu --shard auto --resume --out "$root"
