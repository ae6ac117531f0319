#!/usr/bin/env bash
# The sim-to-real experiment of the README ("Learned agents trained only on renders"): agents
# trained on renders of one look (plain, lerer, lerer + randomised), then asked zero-shot about
# the real photos with `cubeworld eval-real`. Nothing here reads a photo before the evaluation.
#
#   bash scripts/sim2real.sh                 # every job, 2 at a time, into runs/sim2real
#   JOBS=1 bash scripts/sim2real.sh ppo-top  # only the jobs whose names start with ppo-top
#
# Jobs (each skips itself when its result file exists, so a killed run resumes by rerunning):
#   ppo-{top,tower}-{plain,lerer,rand}-s{0,1,2}  PPO CNN (agents.sb3, 14,336 steps, 64 px) on
#       TopBlockStability-v0, or TowerStability-v0 with 2-4 cubes (the photos' towers)
#   grpo-{plain,lerer,rand}-s{0,1,2}             the tiny VLM by GRPO (the quickstart's settings, 200 steps)
#   sft-{plain,lerer,rand}-s{0,1,2}              the tiny VLM by SFT (400 steps)
#     on TopBlockStability-v0; their adapters are asked the photos twice: with the Lerer prompt
#     (real-NAME.json) and with the prompt they were trained on (real-COND-trainprompt-sSEED.json).
#   looks      sim to sim: every TopBlockStability-v0 agent above on held-out renders of each look
#       (`cubeworld eval-matrix`, 100 episodes from seed 1000000, seeds pooled); after the others.
#   vote-rand  the ensemble (VoteAgent): perceive (the chair), the three SFT seeds and the three PPO
#       TowerStability seeds trained on lerer + randomised renders; chosen before any member's
#       photo score was seen (7 members: no ties). Run it after the others: `bash scripts/sim2real.sh vote`.
# Every VLM answer on the photos is sampled at the default decoding (temperature 1.0, min_p 0.1,
# sampling seed 0). Env vars: DATA (the photo folder), OUT (results), JOBS (parallel jobs).
set -euo pipefail
DATA=${DATA:-../shared/data/lerer-dev}
OUT=${OUT:-runs/sim2real}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # several jobs on few cores: torch's threads would starve
mkdir -p "$OUT"

look() {
  case $1 in
    plain) echo '{}' ;;
    lerer) echo '{"style": "lerer"}' ;;
    rand) echo '{"style": "lerer", "randomise": true}' ;;
    *) echo "unknown look $1" >&2; return 2 ;;
  esac
}

run_job() {  # NAME: ppo-ENV-LOOK-sSEED | grpo-LOOK-sSEED | sft-LOOK-sSEED
  local name=$1 kind env look seed kw
  IFS=- read -r kind env look seed <<<"$name"
  if [[ $kind != ppo ]]; then seed=$look; look=$env; fi
  seed=${seed#s}
  # Every step skips itself when its output exists.
  local real="$OUT/real-$name.json" realq="$OUT/real-${name%-s*}-trainprompt-s$seed.json"
  [[ -n $look ]] && kw=$(look "$look")
  case $kind in
    ppo)
      local env_id=TopBlockStability-v0
      if [[ $env == tower ]]; then
        env_id=TowerStability-v0
        kw=$(python -c "import json,sys; d=json.loads(sys.argv[1]); d['n_blocks']=[2, 4]; print(json.dumps(d))" "$kw")
      fi
      [[ -f $OUT/$name.zip ]] || cubeworld train-sb3 --env "$env_id" --env-kwargs "$kw" --seed "$seed" \
        --eval-episodes 200 --out "$OUT/$name.zip" > "$OUT/$name.log" 2>&1
      [[ -f $real ]] || cubeworld eval-real --data "$DATA" --agent "sb3:$OUT/$name.zip" --quiet --out "$real" \
        >> "$OUT/$name.log" 2>&1
      ;;
    grpo|sft)
      local steps=200 extra=()
      [[ $kind == sft ]] && { steps=400; extra=(--set objective=sft --set group_size=8 --set kl_coef=0.0); }
      local adapter; adapter="$OUT/$name/checkpoints/$(printf 'step-%06d' "$steps")"
      [[ -d $adapter ]] || cubeworld train --set env_id=TopBlockStability-v0 "${extra[@]}" --set max_steps=$steps \
        --set eval_every=$steps --set eval_episodes=64 --set save_every=$steps --set seed="$seed" \
        --set "env_kwargs=$kw" --output-dir "$OUT/$name" > "$OUT/$name.log" 2>&1
      [[ -f $real ]] || cubeworld eval-real --data "$DATA" --agent "vlm:tiny-base+adapter=$adapter" --quiet \
        --out "$real" >> "$OUT/$name.log" 2>&1
      # The same photos asked the question the adapter was trained on: a shift of images alone.
      [[ -f $realq ]] || cubeworld eval-real --data "$DATA" --agent "vlm:tiny-base+adapter=$adapter" --quiet \
        --prompt top_block_stability --out "$realq" >> "$OUT/$name.log" 2>&1
      ;;
    vote)
      local members=perceive
      for s in 0 1 2; do members+="|vlm:tiny-base+adapter=$OUT/sft-rand-s$s/checkpoints/step-000400"; done
      for s in 0 1 2; do members+="|sb3:$OUT/ppo-tower-rand-s$s.zip"; done
      [[ -f $real ]] || cubeworld eval-real --data "$DATA" --agent "vote:$members" --quiet --out "$real" \
        > "$OUT/$name.log" 2>&1
      ;;
    looks)
      local agents=()
      for k in ppo-top sft grpo; do for l in plain lerer rand; do for s in 0 1 2; do
        if [[ $k == ppo-top ]]; then agents+=(--agent "$k-$l-s$s=sb3:$OUT/$k-$l-s$s.zip")
        else agents+=(--agent "$k-$l-s$s=vlm:tiny-base+adapter=$OUT/$k-$l-s$s/checkpoints/$(printf 'step-%06d' \
          "$([[ $k == sft ]] && echo 400 || echo 200)")"); fi
      done; done; done
      [[ -f $OUT/looks/seeds.csv ]] || cubeworld eval-matrix "${agents[@]}" --agent base=vlm:tiny-base \
        --env "plain=TopBlockStability-v0" --env 'lerer=TopBlockStability-v0:{"style": "lerer"}' \
        --env 'rand=TopBlockStability-v0:{"style": "lerer", "randomise": true}' -n 100 --seed 1000000 --quiet \
        --out "$OUT/looks" > "$OUT/looks.log" 2>&1
      echo "looks: $OUT/looks/seeds.csv"; return 0
      ;;
    *) echo "unknown job $name" >&2; return 2 ;;
  esac
  echo "$name: $(python -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"photos {r['accuracy']:.3f}\")" "$real")"
}
export -f run_job look
export DATA OUT

jobs=()
for kind in grpo sft; do for l in plain lerer rand; do for s in 0 1 2; do jobs+=("$kind-$l-s$s"); done; done; done
for env in tower top; do for l in plain lerer rand; do for s in 0 1 2; do jobs+=("ppo-$env-$l-s$s"); done; done; done
[[ ${1:-} == vote* ]] && jobs=(vote-rand)
[[ ${1:-} == looks ]] && jobs=(looks)
printf '%s\n' "${jobs[@]}" | grep "^${1:-}" | xargs -P "$JOBS" -I{} bash -c 'run_job {}'
