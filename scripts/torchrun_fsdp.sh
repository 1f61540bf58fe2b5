#!/usr/bin/env bash
# An fsdp run started by torchrun: run this same script on every node (NODE_RANK 0..NNODES-1).
# Lightning sees torchrun's environment (TorchElasticEnvironment) and starts no processes of
# its own; trainer.devices / trainer.num_nodes must match --nproc-per-node / --nnodes.
#
#   NNODES=2 NPROC=8 NODE_RANK=0 MASTER_ADDR=node0 bash scripts/torchrun_fsdp.sh model=7b tokenizer=bpe_32k
#   NNODES=1 NPROC=2 bash scripts/torchrun_fsdp.sh trainer.accelerator=cpu parallelism.precision=32   # on a laptop
#
# Extra arguments are llmexp overrides. Other layouts: PARALLELISM=fsdp_tp (or tp, ddp).
set -euo pipefail
NNODES=${NNODES:-1}
NPROC=${NPROC:-8}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
PARALLELISM=${PARALLELISM:-fsdp}
PYTHON=${PYTHON:-python}

# Tokenize once, before the ranks start, so they do not race to fill the same cache.
if [ "$NODE_RANK" = 0 ]; then "$PYTHON" -m llmexp prepare "$@"; fi

exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --nproc-per-node="$NPROC" --node-rank="$NODE_RANK" \
  --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" \
  -m llmexp parallelism="$PARALLELISM" trainer.devices="$NPROC" trainer.num_nodes="$NNODES" "$@"
