"""One step, stage by stage: the prompts (:mod:`.prompts`), the structure check of the guide's
text (:mod:`.strategy`), the judge (:mod:`.judge`), the reward terms and their shaping
(:mod:`.reward`), and the scorer that runs them in order around the core call and the validator
(:mod:`.scoring`, the one place a core's answer becomes a number)."""
