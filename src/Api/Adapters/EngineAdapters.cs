using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Inference.Engine;
using Microsoft.Extensions.Options;

namespace Loom.Api.Adapters;

/// <summary>
/// Makes a tenant's stored adapter servable: unpacks its blob once into a folder named by its SHA-256
/// (under Api:AdapterCacheDirectory) and registers it with the engine under the adapter's id.
/// </summary>
public sealed class EngineAdapters(IInferenceEngine engine, IBlobStore blobs, IOptions<ApiOptions> options)
{
    public static string EngineId(Adapter adapter) => adapter.Id.ToString("N");

    public async Task<string> EnsureRegisteredAsync(Adapter adapter, CancellationToken ct)
    {
        var id = EngineId(adapter);
        if (engine.IsAdapterRegistered(id)) return id;
        var root = Path.GetFullPath(options.Value.AdapterCacheDirectory);
        var folder = Path.Combine(root, adapter.BlobSha256);
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
        engine.RegisterAdapter(id, folder);
        return id;
    }

    /// <summary>Forgets a deleted adapter in the engine; false while a running request still uses it.</summary>
    public bool TryUnregister(Adapter adapter)
    {
        var id = EngineId(adapter);
        try
        {
            if (engine.IsAdapterRegistered(id)) engine.UnregisterAdapter(id);
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
