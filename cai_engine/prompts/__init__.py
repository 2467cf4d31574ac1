"""Every prompt template the engine sends, in one place (revise here, judge in ``judge.py``)."""
