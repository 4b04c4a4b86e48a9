using Loom.Inference.Engine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Inference;

/// <summary>Entry point of the inference module (role "inference").</summary>
public static class InferenceModule
{
    /// <summary>Registers <see cref="IInferenceEngine"/> as a singleton. The model in Inference:ModelDirectory is
    /// loaded on first use; without one, the engine is a stand-in that refuses requests.</summary>
    public static IServiceCollection AddInference(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<InferenceOptions>()
            .Bind(configuration.GetSection(InferenceOptions.SectionName))
            .Validate(o => o.MaxContext > 0 && o.PrefillChunk > 0, "Inference:MaxContext and Inference:PrefillChunk must be positive")
            .ValidateOnStart();
        services.AddSingleton<IInferenceEngine>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<InferenceOptions>>().Value;
            return string.IsNullOrWhiteSpace(options.ModelDirectory)
                ? new UnconfiguredInferenceEngine()
                : InferenceEngine.Load(options);
        });
        return services;
    }
}
