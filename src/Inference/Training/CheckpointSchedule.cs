namespace Loom.Inference.Training;

/// <summary>
/// Checkpoints the training loop takes by itself, with back-pressure. At every step that is a multiple of
/// <paramref name="EverySteps"/> (after the start, before the last step) the loop copies its state between two optimizer
/// steps and hands the snapshot to <paramref name="Persist"/>, which starts persisting it off the loop and returns a task
/// that completes once the checkpoint is durable (or its write has failed). The loop runs on while a checkpoint is being
/// written, but it starts no step more than <paramref name="LagSteps"/> steps past a checkpoint whose write has not
/// completed: it waits (yielding its slices, so inference goes on) until the write does. A crash therefore loses at most
/// <c>EverySteps + LagSteps</c> steps. <c>LagSteps = EverySteps</c> lets each write overlap a whole interval of training
/// (the loop waits only at the next checkpoint); 0 waits for every write (synchronous checkpoints). The wait and the copy
/// are the checkpoint's stall, reported in <see cref="TrainingSnapshot.Stall"/>.
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
