using Loom.Inference.Engine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Loom.Inference.Tests.Engine;

/// <summary>Binds Inference:* settings the way the host does (<see cref="InferenceModule.AddInference"/>, with its
/// validation at start) and returns the options.</summary>
internal static class OptionsBinding
{
    public static InferenceOptions Bind(params (string Key, string Value)[] settings)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(settings.ToDictionary(s => $"Inference:{s.Key}", s => (string?)s.Value)).Build();
        using var sp = new ServiceCollection().AddInference(config).BuildServiceProvider();
        return sp.GetRequiredService<IOptions<InferenceOptions>>().Value;
    }
}
