using Loom.Inference.Engine;
using Loom.Inference.Training;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Jobs.FineTuning;

/// <summary>The engines of this process that train, by base model: each engine of <see cref="ServedEngines"/> (the first
/// one and those of Inference:Models) trains fine-tunes of the model it serves.</summary>
public static class TrainingEngines
{
    /// <summary>The engine serving <paramref name="baseModelName"/> here, when it can train; null otherwise.</summary>
    public static IInferenceEngine? Find(IServiceProvider services, string baseModelName) =>
        Served(services).FirstOrDefault(e => e.Model.Name == baseModelName);

    /// <summary>The base models this process trains.</summary>
    public static IReadOnlyList<string> Models(IServiceProvider services) => [.. Served(services).Select(e => e.Model.Name)];

    private static IEnumerable<IInferenceEngine> Served(IServiceProvider services)
    {
        var engines = services.GetService<ServedEngines>()?.All ?? [];
        if (engines.Count == 0 && services.GetService<IInferenceEngine>() is { } first and not UnconfiguredInferenceEngine) engines = [first];
        return engines.Where(e => e is ITrainingEngine and not UnconfiguredInferenceEngine);
    }
}
