namespace Loom.Data.Blobs;

/// <summary>Content-addressed blob storage (adapter weights, training files, checkpoints), keyed by SHA-256 hex.</summary>
public interface IBlobStore
{
    /// <summary>Stores the stream's bytes; returns their SHA-256 (lower-case hex) and length. Idempotent for equal content.</summary>
    Task<BlobRef> PutAsync(Stream content, CancellationToken ct = default);

    /// <summary>Opens a blob for reading; verifies the hash when the stream is read to its end.</summary>
    Stream OpenRead(string sha256);

    bool Exists(string sha256);

    Task DeleteAsync(string sha256, CancellationToken ct = default);

    /// <summary>Every stored blob with its length and when it was last written (a Put of equal content refreshes it).</summary>
    IEnumerable<StoredBlob> List();

    /// <summary>
    /// Deletes a blob last written before <paramref name="writtenBefore"/> if <paramref name="isReferenced"/> still says
    /// no once the blob is out of reach of readers and writers. A Put of the same content that races with this either
    /// refreshed the blob before (then it is kept) or writes it anew after (then it exists again). True if deleted.
    /// </summary>
    Task<bool> CollectAsync(string sha256, DateTimeOffset writtenBefore, Func<CancellationToken, Task<bool>> isReferenced, CancellationToken ct = default);
}

public sealed record StoredBlob(string Sha256, long Length, DateTimeOffset LastWritten);

public sealed record BlobRef(string Sha256, long Length);

/// <summary>Raised when a stored blob no longer matches its hash.</summary>
public sealed class BlobCorruptException(string sha256) : IOException($"Blob {sha256} does not match its SHA-256 (corrupt or tampered).")
{
    public string Sha256 { get; } = sha256;
}
