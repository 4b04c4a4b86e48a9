namespace Loom.Inference.Training;

/// <summary>
/// Checkpoints the training loop takes by itself, with back-pressure. At every step that is a multiple of
/// <paramref name="EverySteps"/> (after the start, before the last step) the loop copies its state between two optimizer
/// steps into host buffers the run allocated at its start (<see cref="SnapshotStaging"/>: straight copies, no
/// allocation) and hands the snapshot to <paramref name="Persist"/>, which starts persisting it off the loop and returns
/// a task that completes once the checkpoint is durable (or its write has failed). Training runs on while the checkpoint
/// is written, but it completes no more than <paramref name="LagSteps"/> optimizer steps past a checkpoint whose write
/// has not completed: the update that would go further waits (yielding its slices, so inference goes on) until the write
/// does, and so does the next checkpoint. A crash therefore loses at most <c>EverySteps + LagSteps</c> completed steps.
/// With 0 (a fine-tuning job's default) that is one interval, and the write still overlaps the forward and backward
/// passes of the next step (DataStates-LLM's lazy checkpointing: only the update must not run ahead of the copy's
/// persistence); the loop stands still only for the part of a write that outlasts them. The wait and the copy are the
/// checkpoint's stall, reported in <see cref="TrainingSnapshot.Stall"/> (a wait in the stall of the checkpoint after it)
/// and over the run in <see cref="TrainingResult.CheckpointStall"/>.
/// </summary>
/// <param name="Persist">Called on the engine's loop thread: it must return at once (queue the write, return its task).</param>
public sealed record CheckpointSchedule(int EverySteps, int LagSteps, Func<TrainingSnapshot, Task> Persist)
{
    internal string? Problem() =>
        EverySteps < 1 ? "checkpoints: every_steps must be at least 1"
        : LagSteps < 0 || LagSteps > EverySteps ? "checkpoints: lag_steps must be between 0 and every_steps"
        : Persist is null ? "checkpoints: a persist callback is required"
        : null;
}
