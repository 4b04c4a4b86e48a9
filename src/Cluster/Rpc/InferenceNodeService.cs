using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Loom.Data;
using Loom.Inference.Engine;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Cluster.Rpc;

/// <summary>
/// The inference node's side of the RPC: runs a generation on the engine of its base model (a node may serve several)
/// and streams its events. The call's cancellation (the API node cancelled, or its connection dropped) cancels the
/// engine request. A named adapter is registered here from the shared blob store, after checking it belongs to the
/// tenant the request names. An engine holding Cluster:MaxGenerationsPerEngine generations refuses more with
/// ResourceExhausted.
/// </summary>
internal sealed class InferenceNodeService(ServedEngines engines, EngineAdmission admission, IServiceScopeFactory scopes, IOptions<ClusterOptions> options,
    ILogger<InferenceNodeService> logger) : InferenceNode.InferenceNodeBase
{
    public override async Task Generate(GenerateRequest request, IServerStreamWriter<GenerateEvent> responseStream, ServerCallContext context)
    {
        Authorize(context);
        var ct = context.CancellationToken;
        if (engines.All.Count == 0) throw new RpcException(new Status(StatusCode.Unavailable, "this node serves no model"));
        var engine = engines.Find(request.BaseModel)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"this node does not serve '{request.BaseModel}'"));
        // Full: the API node tries the next node serving the model, and answers 503 when every one is full.
        using var lease = admission.TryEnter(request.BaseModel)
            ?? throw new RpcException(new Status(StatusCode.ResourceExhausted, $"the engine of '{request.BaseModel}' holds {options.Value.MaxGenerationsPerEngine} generations"));
        if (request.AdapterId.Length > 0) await RegisterAdapterAsync(engine, request, ct);

        var generation = RpcMapping.FromRpc(request);
        IAsyncEnumerator<GenerationEvent> events;
        GenerationEvent? first;
        try
        {
            events = engine.GenerateAsync(generation, ct).GetAsyncEnumerator(ct);
            first = await events.MoveNextAsync() ? events.Current : null;
        }
        catch (ArgumentException e) { throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message)); }
        await using (events)
        {
            if (first is null) return;
            await responseStream.WriteAsync(RpcMapping.ToRpc(first), ct);
            while (await events.MoveNextAsync())
                await responseStream.WriteAsync(RpcMapping.ToRpc(events.Current), ct);
        }
    }

    private async Task RegisterAdapterAsync(IInferenceEngine engine, GenerateRequest request, CancellationToken ct)
    {
        if (engine.IsAdapterRegistered(request.AdapterId)) return;
        if (!Guid.TryParseExact(request.AdapterId, "N", out var id) || !Guid.TryParseExact(request.TenantId, "N", out var tenant))
            throw new RpcException(new Status(StatusCode.InvalidArgument, "adapter and tenant ids must be 32 hex digits"));
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        // A system lookup (no tenant in scope), checked against the tenant the API node resolved.
        var adapter = await db.Adapters.IgnoreQueryFilters().AsNoTracking().Include(a => a.BaseModel)
            .SingleOrDefaultAsync(a => a.Id == id && a.TenantId == tenant, ct);
        if (adapter is null || adapter.BaseModel!.Name != request.BaseModel)
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"adapter '{request.AdapterId}' is not registered"));
        try
        {
            await scope.ServiceProvider.GetRequiredService<IAdapterRegistrar>().EnsureRegisteredAsync(adapter, ct);
        }
        catch (Loom.Inference.Formats.AdapterFormatException e)
        {
            logger.LogError(e, "Stored adapter {Adapter} of tenant {Tenant} no longer loads", adapter.Id, adapter.TenantId);
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "the adapter could not be loaded"));
        }
    }

    private void Authorize(ServerCallContext context)
    {
        if (options.Value.InternalToken is not { Length: > 0 } token) return;
        var header = context.RequestHeaders.GetValue("authorization") ?? "";
        var expected = "Bearer " + token;
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header), Encoding.UTF8.GetBytes(expected)))
            throw new RpcException(new Status(StatusCode.Unauthenticated, "missing or wrong cluster token"));
    }
}
