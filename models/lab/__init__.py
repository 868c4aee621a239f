"""``stylecam lab``: the lecture's slow, optimisation-based methods as commands.

They are the reference the fast networks approximate. Each command uses the same VGG-16
loss network as training (or the saliency classifier), shows a progress bar, writes
images under ``--out`` and prints what it wrote.
"""
