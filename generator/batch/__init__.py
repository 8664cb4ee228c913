"""Many images: jobs files, seeds, batched optimisation, and Ray when one machine is not enough.

* :mod:`~generator.batch.jobs` reads jobs (prompts files, JSONL, CSV) over the command's defaults.
* :mod:`~generator.batch.work` is the worker's side: load the models once, make jobs (several
  optimised together), hand back results without writing anything.
* :mod:`~generator.batch.driver` plans (skipping finished jobs), runs an executor and writes each
  result through the one run driver, with ``batch.jsonl`` and the contact sheet.
* :mod:`~generator.batch.ray_runner` is the executor over a Ray cluster (Ray is optional).

For a front end that already holds a pipeline: :func:`generator.batch.driver.make_many` and
:func:`generator.batch.driver.write_result`.
"""
