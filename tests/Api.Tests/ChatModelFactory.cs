using Loom.Tests.Shared;

namespace Loom.Api.Tests;

/// <summary>
/// Loom with the api and inference roles serving a tiny generated Llama model (the golden test model
/// from tests/golden/models, given a Llama-3 chat template) under the name "tiny-chat".
/// </summary>
public class ChatModelFactory : LoomFactory
{
    public const string ModelName = "tiny-chat";
    private string? _modelDir;

    public int TokensPerMinute { get; init; } = 1_000_000;

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Loom:Roles", "api,inference"),
        new("Inference:ModelDirectory", _modelDir ??= CreateModelDir()),
        new("Api:RateLimits:TokensPerMinute", TokensPerMinute.ToString()),
        new("Inference:PrefixCaching", "true"), // the API over prefix caching (the default; named so these tests keep it)
    ];

    protected static string GoldenModel => GoldenChatModel.GoldenDirectory(RepoRoot());

    protected virtual string CreateModelDir() =>
        GoldenChatModel.CreateIn(Path.Combine(Path.GetTempPath(), $"loom-model-{Guid.NewGuid():N}", ModelName), GoldenModel);

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Platform.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Platform.sln not found above the test directory");
    }
}

public sealed class TightTokensChatModelFactory : ChatModelFactory
{
    public TightTokensChatModelFactory() => TokensPerMinute = 60;
}
