using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Inference;

/// <summary>Entry point of the inference module (role "inference").</summary>
public static class InferenceModule
{
    public static IServiceCollection AddInference(this IServiceCollection services, IConfiguration configuration)
    {
        return services;
    }
}
