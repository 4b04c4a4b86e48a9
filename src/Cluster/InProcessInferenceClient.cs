using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Cluster;

/// <summary>The engines of this very process (roles api and inference together): no RPC, no routing; a request goes
/// to the engine of its base model.</summary>
public sealed class InProcessInferenceClient(ServedEngines engines, IServiceProvider services) : IInferenceClient
{
    public Task<ServedModel?> FindModelAsync(string baseModel, CancellationToken cancellationToken) =>
        Task.FromResult(engines.Find(baseModel)?.Model is { } m ? new ServedModel(m.Name, m.Tokenizer, m.MaxContext) : null);

    public Task<IReadOnlySet<string>> LiveModelsAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlySet<string>>(engines.All.Select(e => e.Model.Name).ToHashSet(StringComparer.Ordinal));

    public Task<string> PrepareAdapterAsync(Adapter adapter, CancellationToken cancellationToken) =>
        services.GetRequiredService<IAdapterRegistrar>().EnsureRegisteredAsync(adapter, cancellationToken);

    public IAsyncEnumerable<GenerationEvent> GenerateAsync(string baseModel, GenerationRequest request, CancellationToken cancellationToken) =>
        Engine(baseModel).GenerateAsync(request, cancellationToken);

    public IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(string baseModel, GenerationRequest request,
        IReadOnlyList<Loom.Inference.Sampling.SamplingParams> samplings, CancellationToken cancellationToken) =>
        samplings.Count > 1 && Engine(baseModel) is IChoicesEngine shared
            ? shared.GenerateChoicesAsync(request, samplings, cancellationToken)
            : SequentialChoices.RunAsync(this, baseModel, request, samplings, cancellationToken);

    private IInferenceEngine Engine(string baseModel) =>
        engines.Find(baseModel) ?? throw new InferenceUnavailableException($"The model '{baseModel}' is not served by this node.", TimeSpan.FromSeconds(1));
}
