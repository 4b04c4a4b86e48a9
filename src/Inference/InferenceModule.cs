using Loom.Inference.Engine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Inference;

/// <summary>Entry point of the inference module (role "inference").</summary>
public static class InferenceModule
{
    /// <summary>Registers <see cref="IInferenceEngine"/> (and the same object as <see cref="Training.ITrainingEngine"/>) as a singleton: the continuous-batching <see cref="ServingEngine"/>
    /// over the model in Inference:ModelDirectory, loaded on first use; without one, a stand-in that refuses requests.
    /// Options (section "Inference"): Backend (auto | cpu | cuda | ilgpu-cpu), ModelDirectory, WeightFormat, KvCacheFormat (f32 | bf16; bf16 on the cpu backend only), AdapterPageFormat (f32 | bf16; likewise), MaxContext, PrefillChunk, PoolBytes, TokenBudget,
    /// MaxRunningSequences, HostAdapterCacheBytes, Models (more base models, <see cref="ServedEngines"/>), MaxLoraRank, SwapSpaceBytes, SwapMinTokens, PrefixCaching, SchedulingPolicy (Vtc | Fcfs),
    /// VtcInputWeight, VtcOutputWeight, VtcFairnessGap; validated at start, where a key the options do not have (a typo, or
    /// a removed setting such as PrefixCacheBytes) fails with its name.</summary>
    public static IServiceCollection AddInference(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<InferenceOptions>()
            .Bind(configuration.GetSection(InferenceOptions.SectionName), b => b.ErrorOnUnknownConfiguration = true) // a misspelt or removed setting fails the start, not silently nothing
            .Validate(o => InferenceBackends.IsKnown(o.Backend), $"Inference:Backend must be one of {string.Join(", ", InferenceBackends.All)}")
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<InferenceOptions>, ProblemValidation>(); // fails the start with InferenceOptions.Problem(), which names the setting
        services.AddSingleton<IInferenceEngine>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<InferenceOptions>>().Value;
            if (string.IsNullOrWhiteSpace(options.ModelDirectory)) return new UnconfiguredInferenceEngine();
            var engine = ServingEngine.Load(options);
            sp.GetService<ILoggerFactory>()?.CreateLogger(typeof(ServingEngine)).LogInformation(
                "Inference backend {Backend} (Inference:Backend = {Configured}), KV cache {KvCacheFormat}, adapter pages {AdapterPageFormat}",
                engine.Model.Backend, options.Backend, engine.Model.KvCacheFormat, engine.Model.AdapterPageFormat);
            return engine;
        });
        // further base models (Inference:Models), each with an engine of its own; the first one is the engine above
        services.AddSingleton(sp => new ServedEngines(sp.GetRequiredService<IInferenceEngine>(), sp.GetRequiredService<IOptions<InferenceOptions>>().Value));
        // the same engine trains: LoRA fine-tuning co-served with inference
        services.AddSingleton(sp => (Training.ITrainingEngine)sp.GetRequiredService<IInferenceEngine>());
        return services;
    }

    private sealed class ProblemValidation : IValidateOptions<InferenceOptions>
    {
        public ValidateOptionsResult Validate(string? name, InferenceOptions options) =>
            options.Problem() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
    }
}
