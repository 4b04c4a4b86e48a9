namespace Loom.Inference.Engine;

/// <summary>
/// The engines of this process by base model: the first (<see cref="IInferenceEngine"/>, Inference:ModelDirectory, the
/// one that also trains) and one more per item of Inference:Models, each loaded at start with its own page pool. Empty
/// where the process serves no model.
/// </summary>
public sealed class ServedEngines : IDisposable
{
    private readonly List<IInferenceEngine> _extra = [];

    public ServedEngines(IInferenceEngine first, InferenceOptions options)
    {
        if (first is UnconfiguredInferenceEngine) return;
        var all = new List<IInferenceEngine> { first };
        try
        {
            foreach (var model in options.Models)
            {
                var engine = ServingEngine.Load(options.For(model), model.Name);
                _extra.Add(engine);
                if (all.Any(e => e.Model.Name == engine.Model.Name))
                    throw new ArgumentException($"Inference:Models: the base model '{engine.Model.Name}' is configured twice on this node");
                all.Add(engine);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        All = all;
    }

    /// <summary>Every engine, the first one first.</summary>
    public IReadOnlyList<IInferenceEngine> All { get; } = [];

    /// <summary>The engine serving <paramref name="baseModel"/> here, or null.</summary>
    public IInferenceEngine? Find(string baseModel) => All.FirstOrDefault(e => e.Model.Name == baseModel);

    public void Dispose()
    {
        foreach (var e in _extra) (e as IDisposable)?.Dispose();
        _extra.Clear();
    }
}
