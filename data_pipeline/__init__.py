"""AIEV-Instruct data pipeline (arXiv 2405.14906): seeds, execution-verified dialogues, decontamination."""
