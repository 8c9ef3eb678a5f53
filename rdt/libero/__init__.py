"""LIBERO: suite facts, simulator set-up, the LIBERO <-> RDT mapping, the scripted expert and demo conversion."""
