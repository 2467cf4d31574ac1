"""End-to-end RLAIF runs from one YAML file: revise -> sft -> pairs -> dpo | (reward -> ppo | grpo) -> eval."""
