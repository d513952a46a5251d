"""Training: a run's two stages, each one unit, and everything around them.

trainer.py (`train`, `finetune`, `resume_run`: the stages top to bottom), stage.py (one stage:
inputs -> compile -> fit -> summary, for runs and tune trials), stage1.py and stage2.py (what
each stage fits: cached features or activations, or images), fit.py (the one `fit_stage`),
optim.py (optimizers, schedules, compile), callbacks.py, interrupts.py (stop at a safe point),
freezing.py (which layers train in which stage), features.py and activations.py (the caches
and stage 2's cut), cache.py (verified arrays on disk), splits.py (the data), runfolder.py and
state.py (every file of a run; the resume point), checked.py (typed JSON), session.py (one
sitting of a run), results.py (the test and every result written), publish.py (best.keras and
latest.keras in output.dir), hparams.py (TensorBoard's HParams), runtime.py and
multiworker.py (seeds, precision, tf.distribute).
"""
