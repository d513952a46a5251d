"""Training: the one stage fit and everything around it.

fit.py (the one `fit_stage`), optim.py (optimizers, schedules, compile), callbacks.py,
interrupts.py (stop at a safe point), features.py (feature cache), stage1.py (what stage 1
trains on), splits.py (the data), runfolder.py (the run folder's on-disk format), session.py
(one sitting of a run) and trainer.py (train, finetune, resume).
"""
