"""Parallel plumbing: torch.distributed set-up, the torchrun and Ray launchers, the Ray connection.
Imports nothing itself: its modules sit in different layers (.importlinter)."""
