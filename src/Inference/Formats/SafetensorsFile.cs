using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;

namespace Loom.Inference.Formats;

/// <summary>One tensor's entry in a safetensors header. Offset is relative to the data section.</summary>
public sealed record TensorInfo(string Name, TensorDType DType, long[] Shape, long Offset, long ByteLength)
{
    public long ElementCount => ByteLength / TensorDTypes.SizeOf(DType);
}

/// <summary>A memory-mapped safetensors file: 8-byte little-endian header length, a UTF-8 JSON header,
/// then raw little-endian tensor data. Every inconsistency is reported as a <see cref="ModelFormatException"/>.</summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Headers past this size are refused before anything is allocated for them (a base model's; callers
    /// reading smaller files, such as adapters, pass a tighter bound to <see cref="Open(string, long)"/>).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly Dictionary<string, TensorInfo> _tensors;
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base; // start of the mapping (file offset 0)
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyCollection<TensorInfo> Tensors => _tensors.Values;

    private SafetensorsFile(string path, Dictionary<string, TensorInfo> tensors, Dictionary<string, string> metadata,
        long dataStart, long fileLength)
    {
        Path = path;
        _tensors = tensors;
        Metadata = metadata;
        _dataStart = dataStart;
        if (fileLength > dataStart)
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
        }
    }

    public static SafetensorsFile Open(string path) => Open(path, MaxHeaderBytes);

    public static SafetensorsFile Open(string path, long maxHeaderBytes)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxHeaderBytes, MaxHeaderBytes);
        long fileLength;
        byte[] header;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            fileLength = fs.Length;
            if (fileLength < 8)
                throw new ModelFormatException(path, $"truncated file: {fileLength} bytes, shorter than the 8-byte header length");
            Span<byte> lenBytes = stackalloc byte[8];
            fs.ReadExactly(lenBytes);
            ulong headerLen = BitConverter.ToUInt64(lenBytes);
            if (headerLen > (ulong)(fileLength - 8))
                throw new ModelFormatException(path, $"header length {headerLen} runs past the end of the file ({fileLength} bytes)");
            if (headerLen > (ulong)maxHeaderBytes)
                throw new ModelFormatException(path, $"header of {headerLen} bytes exceeds the {maxHeaderBytes}-byte limit");
            header = new byte[(int)headerLen];
            fs.ReadExactly(header);
        }
        long dataStart = 8 + header.Length;
        var (tensors, metadata) = ParseHeader(path, header, fileLength - dataStart);
        return new SafetensorsFile(path, tensors, metadata, dataStart, fileLength);
    }

    private static (Dictionary<string, TensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        string json;
        try { json = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(header); }
        catch (DecoderFallbackException) { throw new ModelFormatException(path, "header is not valid UTF-8"); }

        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw new ModelFormatException(path, $"header is not valid JSON ({e.Message})"); }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, "header is not a JSON object");
            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new ModelFormatException(path, "__metadata__ is not an object");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new ModelFormatException(path, $"__metadata__ value '{m.Name}' is not a string");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                if (tensors.ContainsKey(prop.Name))
                    throw new ModelFormatException(path, $"tensor '{prop.Name}' appears twice");
                tensors[prop.Name] = ParseTensor(path, prop.Name, prop.Value, dataLength);
            }
            CheckOverlaps(path, tensors.Values);
            return (tensors, metadata);
        }
    }

    private static TensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, $"tensor '{name}': entry is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new ModelFormatException(path, $"tensor '{name}': missing or non-string dtype");
        if (!TensorDTypes.TryParse(dt.GetString()!, out var dtype))
            throw new ModelFormatException(path, $"tensor '{name}': unsupported dtype '{dt.GetString()}'");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"tensor '{name}': missing shape array");
        if (sh.GetArrayLength() > 8)
            throw new ModelFormatException(path, $"tensor '{name}': shape has {sh.GetArrayLength()} dimensions (at most 8)");
        var shape = new long[sh.GetArrayLength()];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new ModelFormatException(path, $"tensor '{name}': shape entry {d} is not a non-negative integer");
            shape[i++] = v;
            if (v != 0 && count > long.MaxValue / 16 / v)
                throw new ModelFormatException(path, $"tensor '{name}': shape [{string.Join(',', shape)}] is too large");
            count *= v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ModelFormatException(path, $"tensor '{name}': data_offsets must be an array [begin, end]");
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new ModelFormatException(path, $"tensor '{name}': invalid data_offsets [{off[0]}, {off[1]}]");
        if (end > dataLength)
            throw new ModelFormatException(path, $"tensor '{name}': data_offsets [{begin}, {end}] out of range (data section is {dataLength} bytes)");
        long expected = count * TensorDTypes.SizeOf(dtype);
        if (end - begin != expected)
            throw new ModelFormatException(path,
                $"tensor '{name}': dtype {TensorDTypes.ToName(dtype)} and shape [{string.Join(',', shape)}] need {expected} bytes but data_offsets span {end - begin}");
        return new TensorInfo(name, dtype, shape, begin, end - begin);
    }

    private static void CheckOverlaps(string path, IEnumerable<TensorInfo> tensors)
    {
        var sorted = tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.Offset).ToArray();
        for (int i = 1; i < sorted.Length; i++)
        {
            var a = sorted[i - 1];
            var b = sorted[i];
            if (b.Offset < a.Offset + a.ByteLength)
                throw new ModelFormatException(path, $"tensors '{a.Name}' and '{b.Name}' overlap");
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorInfo GetInfo(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new ModelFormatException(Path, $"tensor '{name}' not found");

    /// <summary>Pointer to a tensor's bytes inside the mapping (valid until Dispose).</summary>
    internal byte* GetPointer(TensorInfo t)
    {
        if (t.ByteLength == 0) return null;
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + _dataStart + t.Offset;
    }

    /// <summary>The tensor's raw bytes (for tensors under 2 GiB).</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var t = GetInfo(name);
        if (t.ByteLength > int.MaxValue)
            throw new ModelFormatException(Path, $"tensor '{name}' is too large for a span ({t.ByteLength} bytes)");
        return new ReadOnlySpan<byte>(GetPointer(t), (int)t.ByteLength);
    }

    /// <summary>The tensor converted to float32 (F32, F16 and BF16 are accepted).</summary>
    public float[] ReadFloats(string name)
    {
        var t = GetInfo(name);
        var result = new float[t.ElementCount];
        DTypeConvert.ToFloat(Path, t, GetBytes(name), result);
        return result;
    }

    public void Dispose()
    {
        if (_base != null)
        {
            _view!.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}
