"""What a run leaves on disk and how it is read back: shared by every tier, imports no tier.

``run_dirs`` (choosing and claiming a run directory), ``checkpoints`` (saving and finding them),
``atomic`` (the one atomic-write helper), ``metrics`` (metrics.jsonl, TensorBoard, W&B),
``model_card`` (README.md), ``hub`` (push to the Hugging Face Hub), ``video`` (episode recordings),
``plots`` (learning curves). Nothing heavy is imported here.
"""
