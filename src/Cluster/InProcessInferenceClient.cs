using System.Runtime.CompilerServices;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Cluster;

/// <summary>The engines of this very process (roles api and inference together): no RPC, no routing; a request goes
/// to the engine of its base model, once <see cref="EngineAdmission"/> gives it a place there.</summary>
public sealed class InProcessInferenceClient(ServedEngines engines, EngineAdmission admission, IServiceProvider services) : IInferenceClient
{
    public Task<ServedModel?> FindModelAsync(string baseModel, CancellationToken cancellationToken) =>
        Task.FromResult(engines.Find(baseModel)?.Model is { } m ? new ServedModel(m.Name, m.Tokenizer, m.MaxContext) : null);

    public Task<IReadOnlySet<string>> LiveModelsAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlySet<string>>(engines.All.Select(e => e.Model.Name).ToHashSet(StringComparer.Ordinal));

    public Task<string> PrepareAdapterAsync(Adapter adapter, CancellationToken cancellationToken) =>
        services.GetRequiredService<IAdapterRegistrar>().EnsureRegisteredAsync(adapter, cancellationToken);

    public IAsyncEnumerable<GenerationEvent> GenerateAsync(string baseModel, GenerationRequest request, CancellationToken cancellationToken) =>
        Admitted(baseModel, engine => engine.GenerateAsync(request, cancellationToken), cancellationToken);

    public IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(string baseModel, GenerationRequest request,
        IReadOnlyList<Loom.Inference.Sampling.SamplingParams> samplings, CancellationToken cancellationToken) =>
        samplings.Count > 1 && Engine(baseModel) is IChoicesEngine
            ? Admitted(baseModel, engine => ((IChoicesEngine)engine).GenerateChoicesAsync(request, samplings, cancellationToken), cancellationToken)
            : SequentialChoices.RunAsync(this, baseModel, request, samplings, cancellationToken);

    /// <summary>The engine's events while this generation holds a place in it; refused (retryable) when it is full.</summary>
    private async IAsyncEnumerable<T> Admitted<T>(string baseModel, Func<IInferenceEngine, IAsyncEnumerable<T>> run,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var engine = Engine(baseModel);
        using var lease = admission.TryEnter(baseModel) ?? throw admission.Busy(baseModel);
        await foreach (var e in run(engine).WithCancellation(cancellationToken).ConfigureAwait(false)) yield return e;
    }

    private IInferenceEngine Engine(string baseModel) =>
        engines.Find(baseModel) ?? throw new InferenceUnavailableException($"The model '{baseModel}' is not served by this node.", TimeSpan.FromSeconds(1));
}
