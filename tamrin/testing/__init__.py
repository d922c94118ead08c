"""Testing utilities that ship with tamrin, so that users can check their own models the same way.

`tamrin.testing.syncs.SyncCounter` counts host-device synchronisations on a CPU run as if its
device were a GPU; `tamrin.testing.sync_steps.SyncSteps` splits those counts by training step.
"""
