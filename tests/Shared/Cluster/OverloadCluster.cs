namespace Loom.Tests.Shared;

/// <summary>
/// The cluster of the overload run (<see cref="LoadRun"/>): the YARP front over two API+web nodes (rate limits in one
/// Redis), two inference nodes serving <see cref="SlowChatModel"/> as "load-chat" with <see cref="Adapters"/> random
/// rank-8 adapters of the demo tenant, each engine holding at most <see cref="MaxGenerationsPerEngine"/> generations.
/// </summary>
public sealed class OverloadCluster : IAsyncDisposable
{
    public const string Model = "load-chat";
    public const int Adapters = 8;
    /// <summary>Small, so the engines (not the API nodes, which share the same cores) are what fills up first, and an
    /// admitted request waits behind at most a few others even in a Debug build.</summary>
    public const int MaxGenerationsPerEngine = 4;

    public LoopbackNodes Nodes { get; }
    public NodeProcess Front { get; private set; } = null!;
    public NodeProcess Api1 { get; private set; } = null!;
    public NodeProcess Api2 { get; private set; } = null!;
    public NodeProcess Inf1 { get; private set; } = null!;
    public NodeProcess Inf2 { get; private set; } = null!;
    public IReadOnlyList<NodeProcess> All => [Front, Api1, Api2, Inf1, Inf2];
    public IReadOnlyList<NodeProcess> Inference => [Inf1, Inf2];
    /// <summary>The names requests use: the base model and its adapters.</summary>
    public IReadOnlyList<string> ModelNames { get; private set; } = [];

    private OverloadCluster(LoopbackNodes nodes) => Nodes = nodes;

    public static async Task<OverloadCluster> StartAsync()
    {
        var cluster = new OverloadCluster(await LoopbackNodes.CreateAsync("loom_overload", redis: true));
        try
        {
            await cluster.StartNodesAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task StartNodesAsync()
    {
        var model = Nodes.SlowModel(Model);
        var limit = new Dictionary<string, string> { ["Cluster:MaxGenerationsPerEngine"] = MaxGenerationsPerEngine.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        Api1 = await Nodes.StartApiAsync("api-1", seed: true);
        var api2 = Nodes.StartApiAsync("api-2");
        var inference = await Task.WhenAll(Nodes.StartInferenceAsync("inf-1", [(Model, model)], limit), Nodes.StartInferenceAsync("inf-2", [(Model, model)], limit));
        (Inf1, Inf2) = (inference[0], inference[1]);
        Api2 = await api2;
        Front = await Nodes.StartFrontAsync(Api1, Api2);
        using var client = Nodes.Client(Api1);
        var names = new List<string> { Model };
        for (var i = 0; i < Adapters; i++)
        {
            var name = $"load-{i}";
            await Nodes.UploadAdapterAsync(client, name, Model, SlowChatModel.WriteAdapter(Path.Combine(Nodes.Root, "adapters", name), rank: 8, seed: 100 + i));
            names.Add(name);
        }
        ModelNames = names;
    }

    public ValueTask DisposeAsync() => Nodes.DisposeAsync();
}
