#!/usr/bin/env bash
# The GPU checks of issues 3 and 4 as one command, sized for one call of the lent GPU machine.
#
#   bash benchmarks/device_check.sh                  # on the GPU machine: at most 8 min (BUDGET=480 s)
#   VAI_CHECK=tiny bash benchmarks/device_check.sh   # the same steps at toy sizes on this CPU (checks the script)
#
# In order, each step logging into runs/device-check/logs/:
#   1. speed.txt   benchmarks/gpu_speed.py, alone on the machine: issue 20's figures for a paper
#                  walker_walk vai run (ms per agent step, N = 1, 2, 4, 8 runs at once, the update
#                  eager and compiled, one render, the adapter on one frame), with card and versions;
#   2. the cartpole_balance run, paper presets, in runs/device-check/ (ignored by git):
#      vision stages and their mask measurement (masks_eval.md: issue 3's cartpole row), then the vai agent, while the sac
#      baseline trains beside it from the start (it needs no adapter), STEPS agent steps each
#      (default 12500, i.e. 100000 frames at action repeat 8: balance needs far fewer than the
#      preset's 500k steps), evaluated every 2500 steps;
#   3. walker.txt  benchmarks/mask_quality.py (into runs/device-check-masks/) --tasks walker_walk --preset paper, beside the vai agent
#                  (issue 3's walker row);
#   4. `vai run cartpole_balance --baseline sac`, which reuses all of it and writes the evaluation
#      (TEST_SEEDS x TEST_EPISODES per mode, default 5 x 2) and report.md.
# Into $OUT (default out/device-check): summary.txt (the tables), report.md, masks.png, curves.png
# and files.tgz (the logs and the run's small files; no checkpoints). Every step reuses what the run directory holds and the trainings
# resume from their checkpoints, so a call cut short is simply made again while the machine is warm.
#
# Set-up (../shared/tools/README.md): carry .whl (../shared/tools/device-wheels.sh, metaworld's wheel
# removed: the DMC tasks do not import it, and it does not fit), .gl (the EGL loader packages) and
# .devdata (a copy of ../shared/data without drawerworld and backgrounds/). The script installs them only where the
# MuJoCo stack is missing and an NVIDIA driver is present.
set -uo pipefail

check=${VAI_CHECK:-gpu}
out=${OUT:-out/device-check}
run=${RUN:-runs/device-check}
py=${PYTHON:-python3}
steps=${STEPS:-12500}
logs=$run/logs
mkdir -p "$out" "$logs"
started=$SECONDS
trap 'kill $(jobs -p) 2>/dev/null' EXIT  # no training outlives the script

if command -v nvidia-smi >/dev/null && ! "$py" -c "import mujoco, dm_control" 2>/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
if [ -d .devdata ]; then export VAI_DATA_DIR=${VAI_DATA_DIR:-$PWD/.devdata}; fi

case $check in
gpu)
    device=cuda preset=paper
    vision_set=()
    collect=()
    rl_set=("train_steps=$steps" "eval_every=2500" "checkpoint_every=1250" "test_seeds=${TEST_SEEDS:-5}"
        "test_episodes=${TEST_EPISODES:-2}")
    speed=(--steps 600 --updates 10 --repeats 30 --runs 1 2 4 8)
    speed_seconds=200
    walker=(--episodes 3 --steps 50)
    mask_eval=(--episodes 3 --steps 50)
    ;;
tiny)
    device=cpu preset=quick
    collect=(--frames 300)
    vision_set=("collect_frames=300" "transporter_steps=4" "adapter_steps=4" "mask_eval_episodes=1" "mask_eval_steps=4")
    rl_set=("train_steps=150" "init_steps=100" "eval_every=75" "eval_episodes=1" "checkpoint_every=75"
        "test_seeds=1" "test_episodes=1")
    speed=(--device cpu --preset quick --task cartpole_balance --init 20 --steps 5 --updates 1 --repeats 2 --runs 1
        --no-compile)
    speed_seconds=300
    walker=(--episodes 1 --steps 4)
    mask_eval=(--episodes 1 --steps 4)
    ;;
*)
    echo "device_check.sh: VAI_CHECK must be gpu or tiny, not '$check'" >&2
    exit 2
    ;;
esac
task=cartpole_balance
budget=${BUDGET:-480}  # seconds this call may take, set-up included; the device call's limit is 600
within() {  # within SECONDS: what is left of the budget once SECONDS are kept back (at least 10)
    local left=$((budget - (SECONDS - started) - $1))
    echo $((left < 10 ? 10 : left))
}
vai() { "$py" -m vai.cli "$@"; }
say() { echo "[$((SECONDS - started)) s] $*"; }
train() {  # train ALGO SECONDS: start or continue the agent RUN/ALGO-seed0, stopped after SECONDS
    local resume=()
    [ -f "$run/$1-seed0/checkpoints/last.pt" ] && resume=(--resume)
    timeout --signal=INT "$2" "$py" -m vai.cli train $task --algo "$1" --preset $preset --run "$run" \
        --device $device --set "${rl_set[@]}" "${resume[@]}"
}

{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; "$py" -c "import torch; print('torch', torch.__version__)"; } > "$logs/machine.txt"

say "1. agent speed"
# Each figure is printed as it is measured, so a cut-off run still leaves the ones before.
[ -s "$logs/speed.txt" ] || timeout $speed_seconds "$py" benchmarks/gpu_speed.py "${speed[@]}" > "$logs/speed.txt" 2>&1
cat "$logs/speed.txt"

# The trainings stop in time for the evaluation (~2 min on the GPU, estimated); an unfinished one
# keeps its last checkpoint and continues at the next call.
rl_seconds=$(within 150)
say "2. sac (background, ${rl_seconds} s at most), vision stages, vai"
train sac $rl_seconds >> "$logs/sac.log" 2>&1 &
sac=$!
vision=(--preset $preset --run "$run" --device $device)
[ ${#vision_set[@]} -gt 0 ] && vision+=(--set "${vision_set[@]}")
[ -f "$run/frames.npz" ] || vai collect $task --preset $preset --run "$run" "${collect[@]}" || exit 1
[ -f "$run/counterfactual.npz" ] || timeout "$(within 20)" "$py" -m vai.cli keypoints $task "${vision[@]}" || exit 1
# The adapter's pool as vai run picks it: Places365, else the photos; never the stand-in cut from video_hard.
backgrounds=()
for pool in places365 photos; do
    [ ${#backgrounds[@]} -eq 0 ] && [ -n "${VAI_DATA_DIR:-}" ] && [ -n "$(ls -A "$VAI_DATA_DIR/$pool" 2>/dev/null)" ] \
        && backgrounds=(--backgrounds "$VAI_DATA_DIR/$pool")
done
[ -f "$run/adapter.safetensors" ] || timeout "$(within 20)" "$py" -m vai.cli adapter $task "${vision[@]}" "${backgrounds[@]}" || exit 1
[ -f "$run/masks_eval.json" ] || timeout "$(within 20)" "$py" -m vai.cli masks eval $task "${vision[@]}" \
    "${mask_eval[@]}" > "$logs/masks.log" 2>&1
say "3. walker masks (background)"
[ ${#vision_set[@]} -gt 0 ] && walker+=(--set "${vision_set[@]}")
timeout "$(within 150)" "$py" benchmarks/mask_quality.py --tasks walker_walk --preset $preset --device $device \
    --runs "$run-masks" "${walker[@]}" >> "$logs/walker.txt" 2>&1 &
masks=$!
finished=yes
train vai "$(within 150)" >> "$logs/vai.log" 2>&1 || { finished=no; say "vai stopped: $(tail -1 "$logs/vai.log")"; }
wait $sac || { finished=no; say "sac stopped: $(tail -1 "$logs/sac.log")"; }
wait $masks || say "walker masks stopped: $(tail -1 "$logs/walker.txt")"

if [ $finished = yes ]; then
    say "4. evaluation and report"
    all_set=("${rl_set[@]}")
    [ ${#vision_set[@]} -gt 0 ] && all_set+=("${vision_set[@]}")
    timeout "$(within 10)" "$py" -m vai.cli run $task --preset $preset --run "$run" --device $device --baseline sac \
        --set "${all_set[@]}" >> "$logs/run.log" 2>&1 || say "vai run stopped: $(tail -1 "$logs/run.log")"
else
    say "4. skipped: a training is unfinished; make the same call again to continue"
fi

{
    echo "# device check ($check), $(date -u +%F), $((SECONDS - started)) s"
    grep -m1 -o "NVIDIA [A-Z0-9]*[^|]*" "$logs/machine.txt" || true
    echo "## agent speed"; cat "$logs/speed.txt"
    echo "## cartpole masks"; cat "$run/masks_eval.md" 2>/dev/null
    echo "## walker masks"; tail -30 "$logs/walker.txt"
    echo "## cartpole results"; cat "$run/results.md" 2>/dev/null
    for agent in vai sac; do
        echo "## $agent training (last episode; last evaluation in train)"
        tail -n 1 "$run/$agent-seed0/train.csv" 2>/dev/null | cut -d, -f1-6
        tail -n 1 "$run/$agent-seed0/eval_train.csv" 2>/dev/null
        tail -n 2 "$logs/$agent.log"
    done
} > "$out/summary.txt"
cp "$run/report.md" "$run/masks.png" "$run/curves.png" "$out/" 2>/dev/null
tar -czf "$out/files.tgz" --exclude='*.pt' --exclude='*.npz' --exclude='replay' --exclude='*.mp4' \
    "$run" runs/device-check-masks "$out"/*.log "$logs/walker.txt" 2>/dev/null
say "done: $out/summary.txt"
