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
}

public sealed record BlobRef(string Sha256, long Length);

/// <summary>Raised when a stored blob no longer matches its hash.</summary>
public sealed class BlobCorruptException(string sha256) : IOException($"Blob {sha256} does not match its SHA-256 (corrupt or tampered).")
{
    public string Sha256 { get; } = sha256;
}
