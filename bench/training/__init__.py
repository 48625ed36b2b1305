"""Training: the loop (train, evaluate), recipes, several processes (torchrun), accuracy
runs and plans, the lab's own loop."""
