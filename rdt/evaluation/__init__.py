"""The evaluation stage, split by job (``rdt evaluate``, the command, is rdt/evaluation/command.py):

config     the settings document of one evaluation job (``--config``, the flags over it): its keys, defaults and
           the one validation of them, the tasks resolved once
settings   the settings of one evaluation (or replay) that summary.json records: the task list resolved from them,
           the checks of the execution horizon and of the episode count
ledger     the evaluation folder: file names, episodes.jsonl (reading, appending, rewriting), the outcome key and
           the checkpoint identity that decide which records a request keeps, success counts (also the report's)
inputs     what the policy is given at each re-plan: batched inputs, noise seeds, the state-range check
policy     the RDT policy built from a checkpoint folder (torch)
run        one evaluation into a folder: the jobs, the planning callback, episode records, videos, the summary
trackers   success as evaluations finish: TensorBoard scalars and Weights & Biases at the checkpoint step
"""
