"""The training stage, split by job (``rdt train``, the command, is rdt/training/command.py):

run_folder   the run folder: checkpoint and export names, listing, retention, the lock, metrics.csv (writer and
             the one reader, also the report's)
sampling     deterministic sample addressing: seeded positions, the micro-batch sampler
backend      DDP or DeepSpeed ZeRO-2 behind one interface (accelerator, sync, backward, autocast, optimizer state)
optim        the recipe's AdamW, LR warmup and EMA (shared with bench/train_step.py)
preemption   stop signals, the launcher's death, Preempted
trainer      the Trainer: set-up, one optimizer step, checkpoints, the loop
"""
