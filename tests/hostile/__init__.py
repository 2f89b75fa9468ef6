"""Hostile inputs and faults, tried as an adversary would, one module per class of case.

Each test raises AssertionError when scratchvae breaks: a traceback, a
misleading message, a wrong exit code, a lost or replaced checkpoint.

- test_checkpoint_files: damaged and hostile checkpoint files, on ``evaluate`` and ``--resume``
- test_data_files: hostile IDX and ``.amat`` data files
- test_command_line: bad command lines and impossible sizes
- test_os_errors: OS errors, disk full, read-only folders, all simulated
- test_divergence: NaN at every step of an epoch (loss, gradient under a finite loss, parameters, optimizer
  state) and in the test evaluation, for both objectives and both kernel sets
- test_run_folders: one run per folder, two runs into one folder
- test_kill_and_resume: SIGKILL and Ctrl-C at random moments, then resume
- test_logs: what a person tailing the output sees
"""
