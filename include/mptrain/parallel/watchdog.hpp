// The launcher watchdog. A rank started by a launcher (mpirun, srun) whose launcher has died
// (killed with SIGKILL, a crashed node daemon) would otherwise go on training and writing
// checkpoints, into a directory that a restart launched meanwhile may already be using, and
// nothing would forward it signals or stop it. Such a rank watches its parent process from a
// thread and ends itself within a second of the parent's death, writing nothing more: _exit()
// in the middle of a save leaves only the save's temporary file (the rename protocol of
// CheckpointDir never names a half-written file, and `latest` only ever names a complete one).
// A process started without a launcher (one process, possibly under nohup) gets no watchdog:
// it may legitimately outlive the shell that started it.
#pragma once

namespace mptrain {

// True when the environment says a launcher started this process: Open MPI's mpirun
// (OMPI_COMM_WORLD_SIZE), a PMIx server (PMIX_RANK) or srun (SLURM_STEP_ID). Call it before
// MPI_Init, which may add such variables to a singleton's own environment.
bool started_by_launcher();

// Starts the watchdog thread: it checks every 100 ms whether the parent process has changed
// (getppid: an orphan is re-parented) and then prints one line naming `rank` and calls
// _exit(exit_internal). Does nothing when the parent is already gone (PID 1).
void start_launcher_watchdog(int rank);

// The same check, synchronously: the trainer calls it at every step boundary and before every
// checkpoint, so that a rank never starts writing once its launcher is known to be gone,
// whatever the thread's timing. Does nothing without a watchdog.
void exit_if_launcher_gone();

}  // namespace mptrain
