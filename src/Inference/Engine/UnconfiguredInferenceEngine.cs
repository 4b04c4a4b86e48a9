namespace Loom.Inference.Engine;

/// <summary>Stands in when no model directory is configured, so the host still starts; every call says what to set.</summary>
public sealed class UnconfiguredInferenceEngine : IInferenceEngine, Training.ITrainingEngine
{
    private const string Missing = "no model is configured (set Inference:ModelDirectory)";

    public ModelInfo Model => throw new InvalidOperationException(Missing);

    public IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
        throw new InvalidOperationException(Missing);

    public void RegisterAdapter(string adapterId, string folder, bool validated = false) => throw new InvalidOperationException(Missing);

    public bool IsAdapterRegistered(string adapterId) => throw new InvalidOperationException(Missing);

    public void UnregisterAdapter(string adapterId) => throw new InvalidOperationException(Missing);

    public EngineMetrics GetMetrics() => throw new InvalidOperationException(Missing);

    public Training.ITrainingRun SubmitTraining(Training.TrainingRequest request) => throw new InvalidOperationException(Missing);
}
