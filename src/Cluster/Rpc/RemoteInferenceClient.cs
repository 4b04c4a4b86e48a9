using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Cluster.Nodes;
using Loom.Cluster.Routing;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Loom.Inference.Tokenization;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Cluster.Rpc;

/// <summary>
/// An API node without an engine: each generation goes over gRPC to a live inference node serving its base model,
/// the one (base model, adapter) hashes to unless it is past the load threshold (<see cref="NodeRouter"/>). A node that
/// cannot be reached before the first event is set aside and the next one tried; a node lost after the first event
/// ends the stream with <see cref="InferenceUnavailableException"/> (retryable). A node whose engine is full
/// (<see cref="EngineAdmission"/>) is passed over for the next, and when every one is full the request is refused as
/// retryable too. Text prompts are tokenized here, with
/// the tokenizer of the base model's folder (its path in <c>base_models</c>).
/// </summary>
public sealed class RemoteInferenceClient(NodeDirectory directory, IServiceScopeFactory scopes, IOptions<ClusterOptions> options, ClusterMeters meters,
    ILogger<RemoteInferenceClient> logger) : IInferenceClient, IDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new();
    private readonly ConcurrentDictionary<string, Lazy<ServedModel>> _models = new();

    public async Task<ServedModel?> FindModelAsync(string baseModel, CancellationToken cancellationToken)
    {
        if ((await directory.ServingAsync(baseModel, cancellationToken)).Count == 0) return null;
        await using var scope = scopes.CreateAsyncScope();
        var row = await scope.ServiceProvider.GetRequiredService<PlatformDbContext>().BaseModels.AsNoTracking()
            .SingleOrDefaultAsync(m => m.Name == baseModel, cancellationToken);
        if (row is null) return null;
        var cached = _models.GetOrAdd($"{row.Name}\n{row.Path}\n{row.ContextLength}", _ => new Lazy<ServedModel>(() => Load(row)));
        return cached.Value;
    }

    public async Task<IReadOnlySet<string>> LiveModelsAsync(CancellationToken cancellationToken) =>
        (await directory.LiveAsync(cancellationToken)).SelectMany(n => n.Models).ToHashSet(StringComparer.Ordinal);

    private ServedModel Load(BaseModel row)
    {
        ITokenizer? tokenizer = null;
        if (File.Exists(Path.Combine(row.Path, "tokenizer.json"))) tokenizer = TokenizerLoader.Load(row.Path);
        else logger.LogWarning("No tokenizer.json in {Path}: base model '{Model}' takes no text prompts on this node", row.Path, row.Name);
        return new ServedModel(row.Name, tokenizer, row.ContextLength);
    }

    public Task<string> PrepareAdapterAsync(Adapter adapter, CancellationToken cancellationToken) =>
        Task.FromResult(adapter.Id.ToString("N")); // the inference node registers it from the blob store when a request names it

    public async IAsyncEnumerable<GenerationEvent> GenerateAsync(string baseModel, GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var message = RpcMapping.ToRpc(baseModel, request);
        var o = options.Value;
        var nodes = await directory.ServingAsync(baseModel, cancellationToken);
        var (order, placement) = NodeRouter.OrderFor(nodes, baseModel, request.AdapterId, n => directory.InFlight(n.Id, baseModel), o.AffinityMaxLoad);
        var busy = 0;
        for (var attempt = 0; attempt < order.Count; attempt++)
        {
            var node = order[attempt];
            using var tracked = directory.Track(node.Id, baseModel);
            var call = Client(node).Generate(message, Headers(), cancellationToken: cancellationToken);
            using (call)
            {
                var (reached, first) = await FirstAsync(call, node, cancellationToken);
                if (reached is Reach.Busy) busy++;
                if (reached is not Reach.Reached)
                {
                    if (reached is Reach.Unreachable) directory.MarkUnreachable(node);
                    if (attempt + 1 < order.Count) meters.FailedOver();
                    continue;
                }
                meters.Routed(attempt == 0 ? placement : Placement.Failover);
                if (first is null) yield break;
                yield return first;
                while (await NextAsync(call, node, cancellationToken) is { } e) yield return e;
                yield break;
            }
        }
        if (busy > 0 && busy == order.Count) throw EngineAdmission.Busy(baseModel, o.RetryAfter);
        throw new InferenceUnavailableException($"No inference node serving '{baseModel}' can be reached. Please try again in {o.RetryAfter.TotalSeconds:0}s.", o.RetryAfter);
    }

    private enum Reach { Reached, Unreachable, Busy }

    /// <summary>Choices one after another, each routed as a generation of its own (to the same node while it is
    /// under the load threshold); sharing one prefill between them is not carried over the RPC yet.</summary>
    public IAsyncEnumerable<(int Choice, GenerationEvent Event)> GenerateChoicesAsync(string baseModel, GenerationRequest request,
        IReadOnlyList<Loom.Inference.Sampling.SamplingParams> samplings, CancellationToken cancellationToken) =>
        SequentialChoices.RunAsync(this, baseModel, request, samplings, cancellationToken);

    /// <summary>The first event (null when the stream ended without one); not reached when the node could not be
    /// reached or does not serve the model, busy when its engine holds the most generations allowed (the caller tries
    /// the next either way).</summary>
    private async Task<(Reach Reached, GenerationEvent? First)> FirstAsync(AsyncServerStreamingCall<GenerateEvent> call, LiveNode node, CancellationToken ct)
    {
        try
        {
            return (Reach.Reached, await call.ResponseStream.MoveNext(ct) ? RpcMapping.FromRpc(call.ResponseStream.Current) : null);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested && e.StatusCode is StatusCode.ResourceExhausted)
        {
            return (Reach.Busy, null);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested && e.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown
                                     or StatusCode.Aborted or StatusCode.NotFound)
        {
            logger.LogWarning("Inference node {Node} at {Url} did not take a request ({Status}: {Detail}); trying the next", node.Id, node.InternalUrl, e.StatusCode, e.Status.Detail);
            return (Reach.Unreachable, null);
        }
        catch (RpcException e) { throw Translate(e, node, ct); }
    }

    private async Task<GenerationEvent?> NextAsync(AsyncServerStreamingCall<GenerateEvent> call, LiveNode node, CancellationToken ct)
    {
        try
        {
            return await call.ResponseStream.MoveNext(ct) ? RpcMapping.FromRpc(call.ResponseStream.Current) : null;
        }
        catch (RpcException e) { throw Translate(e, node, ct); }
    }

    private Exception Translate(RpcException e, LiveNode node, CancellationToken ct)
    {
        if (ct.IsCancellationRequested) return new OperationCanceledException(ct);
        switch (e.StatusCode)
        {
            case StatusCode.InvalidArgument:
                return new ArgumentException(e.Status.Detail);
            case StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown or StatusCode.Aborted or StatusCode.Cancelled or StatusCode.DeadlineExceeded:
                directory.MarkUnreachable(node);
                meters.Lost();
                logger.LogWarning("Inference node {Node} at {Url} was lost during a generation ({Status}: {Detail})", node.Id, node.InternalUrl, e.StatusCode, e.Status.Detail);
                var retry = options.Value.RetryAfter;
                return new InferenceUnavailableException($"The inference node serving this request was lost. Please try again in {retry.TotalSeconds:0}s.", retry, e);
            default:
                return new InvalidOperationException($"inference node {node.Id} failed the request ({e.StatusCode}: {e.Status.Detail})", e);
        }
    }

    private Metadata? Headers() => options.Value.InternalToken is { Length: > 0 } token ? new Metadata { { "authorization", "Bearer " + token } } : null;

    private InferenceNode.InferenceNodeClient Client(LiveNode node) =>
        new(_channels.GetOrAdd(node.InternalUrl, url => GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectTimeout = options.Value.ConnectTimeout,
                // A peer that vanishes without closing its sockets (a cut network) is found by the pings.
                KeepAlivePingDelay = TimeSpan.FromSeconds(2), KeepAlivePingTimeout = TimeSpan.FromSeconds(2),
                KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
                EnableMultipleHttp2Connections = true, PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            },
            MaxReceiveMessageSize = 4 << 20, MaxSendMessageSize = 16 << 20,
        })));

    public void Dispose()
    {
        foreach (var c in _channels.Values) c.Dispose();
    }
}
