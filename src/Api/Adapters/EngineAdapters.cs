using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Loom.Api.Adapters;

/// <summary>
/// Makes a tenant's stored adapter servable: unpacks its blob once into a folder named by its SHA-256
/// (under Api:AdapterCacheDirectory, beside the blobs in the data directory) and registers it with the engine
/// under the adapter's id. A folder found on disk is served only after its content hashes to the adapter's
/// recorded blob hash; one that does not is unpacked again from the (hash-checked) blob. An adapter goes to the engine
/// of its base model where this node serves several (<see cref="ServedEngines"/>).
/// </summary>
public sealed class EngineAdapters(IInferenceEngine engine, ServedEngines served, IBlobStore blobs, IOptions<ApiOptions> options, IOptions<BlobStoreOptions> blobOptions,
    ILogger<EngineAdapters> logger) : Loom.Cluster.IAdapterRegistrar
{
    public static string EngineId(Adapter adapter) => adapter.Id.ToString("N");

    /// <summary>Api:AdapterCacheDirectory, or "adapters" beside the blob store's root.</summary>
    public string CacheRoot => Path.GetFullPath(options.Value.AdapterCacheDirectory is { Length: > 0 } dir
        ? dir
        : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(blobOptions.Value.Root).TrimEnd(Path.DirectorySeparatorChar)) ?? ".", "adapters"));

    public async Task<string> EnsureRegisteredAsync(Adapter adapter, CancellationToken ct)
    {
        var id = EngineId(adapter);
        var engine = EngineFor(adapter);
        if (engine.IsAdapterRegistered(id)) return id;
        var root = CacheRoot;
        var folder = Path.Combine(root, adapter.BlobSha256);
        if (Directory.Exists(folder) && !await MatchesAsync(folder, adapter.BlobSha256, ct))
        {
            logger.LogWarning("Unpacked adapter folder {Folder} does not match its recorded hash; unpacking it again", folder);
            Directory.Delete(folder, recursive: true);
        }
        if (!Directory.Exists(folder))
        {
            // Unpack beside the target and move into place, so a half-written folder is never seen.
            var temp = Path.Combine(root, $".incoming-{Guid.NewGuid():N}");
            try
            {
                await AdapterBlob.ExtractAsync(blobs, adapter.BlobSha256, temp, ct);
                try { Directory.Move(temp, folder); }
                catch (IOException) when (Directory.Exists(folder)) { /* another request unpacked it first */ }
            }
            finally
            {
                if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            }
        }
        // validated in full at upload (AdapterService); the folder is the blob of the recorded hash, checked above
        engine.RegisterAdapter(id, folder, validated: true);
        return id;
    }

    /// <summary>The engine of the adapter's base model (the first engine when the base model was not loaded with it, or
    /// this node does not serve it: that engine then refuses or checks the adapter as before).</summary>
    private IInferenceEngine EngineFor(Adapter adapter) =>
        adapter.BaseModel is { } m && served.Find(m.Name) is { } e ? e : engine;

    private static async Task<bool> MatchesAsync(string folder, string sha256, CancellationToken ct)
    {
        try
        {
            return await AdapterBlob.HashFolderAsync(folder, ct) == sha256;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // a file is missing or unreadable: unpack again
        }
    }

    /// <summary>Forgets a deleted adapter in the engine; false while a running request still uses it.</summary>
    public bool TryUnregister(Adapter adapter)
    {
        var id = EngineId(adapter);
        try
        {
            foreach (var e in served.All.Count > 0 ? served.All : [engine])
                if (e.IsAdapterRegistered(id)) e.UnregisterAdapter(id);
            return true;
        }
        catch (InvalidOperationException) when (engine is not UnconfiguredInferenceEngine)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return true; // a node without an engine holds nothing to forget
        }
    }
}
