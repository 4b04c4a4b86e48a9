namespace Loom.Api.Errors;

/// <summary>Thrown by <see cref="LimitedRequestBody"/>; not an IOException, so body binding cannot swallow it and it reaches the error middleware.</summary>
public sealed class RequestBodyTooLargeException(long limit) : Exception($"The request body is larger than {limit} bytes.")
{
    public long Limit { get; } = limit;
}

/// <summary>
/// A request body without Content-Length (chunked) read through a byte budget. Past it, reading throws
/// <see cref="RequestBodyTooLargeException"/>, which <see cref="ApiExceptionMiddleware"/> answers with 413 in the
/// envelope (the server's own limit would surface as an IOException that JSON binding turns into an empty 413).
/// </summary>
internal sealed class LimitedRequestBody(Stream inner, long limit) : Stream
{
    private long _read;

    public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));
    public override int Read(Span<byte> buffer) => Count(inner.Read(buffer));
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => Count(await inner.ReadAsync(buffer, ct));
    public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => Count(await inner.ReadAsync(buffer.AsMemory(offset, count), ct));

    private int Count(int n)
    {
        _read += n;
        if (_read > limit) throw new RequestBodyTooLargeException(limit);
        return n;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
