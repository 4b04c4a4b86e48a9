using Loom.Inference.Training;

namespace Loom.Inference.Engine;

public sealed partial class ServingEngine : ITrainingEngine
{
    /// <inheritdoc/>
    public ITrainingRun SubmitTraining(TrainingRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_stopping, this);
        throw new NotSupportedException("training runs are not built yet: the contract (src/Inference/Training) is in place, the trainer is not");
    }
}
