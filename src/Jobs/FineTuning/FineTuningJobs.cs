using Loom.Api;
using Loom.Api.Adapters;
using Loom.Api.FineTuning;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Loom.Jobs.FineTuning;

public static class FineTuningJobs
{
    /// <summary>The fine-tuning run and the scheduler the API uses. A jobs node without the API role still needs the
    /// adapter registration (and the options both read), so those are added here when missing.</summary>
    public static IServiceCollection AddFineTuningJobs(this IServiceCollection services)
    {
        services.AddScoped<FineTuneJobRunner>();
        services.AddSingleton<IFineTuneScheduler, FineTuneScheduler>();
        services.TryAddSingleton<EngineAdapters>();
        services.TryAddSingleton<Loom.Inference.Engine.IInferenceEngine, Loom.Inference.Engine.UnconfiguredInferenceEngine>();
        services.AddOptions<ApiOptions>().BindConfiguration("Api");
        services.AddOptions<FineTuningOptions>().BindConfiguration("FineTuning");
        return services;
    }
}
