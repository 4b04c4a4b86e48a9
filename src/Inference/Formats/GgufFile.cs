using System.IO.MemoryMappedFiles;
using System.Text;

namespace Loom.Inference.Formats;

/// <summary>Tensor element types of GGUF that Loom reads (ggml_type numbers).</summary>
public enum GgufType { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 }

/// <summary>One tensor of a GGUF file. Dims are ggml's ne: Dims[0] is the innermost (a row's length, HF's in_features),
/// Dims[1] the number of rows. Offset is from the start of the file.</summary>
public sealed record GgufTensor(string Name, long[] Dims, GgufType Type, long Offset, long ByteLength)
{
    public long Rows => Dims.Length > 1 ? Dims[1] : 1;
    public long Cols => Dims[0];
}

/// <summary>A memory-mapped GGUF file (version 2 or 3, little-endian): magic, version, tensor and metadata counts, the
/// metadata key/values, the tensor infos, then the aligned data section. Scalars and strings of the metadata are kept
/// (arrays only by their length: the tokenizer is read from tokenizer.json). Every size is checked against the file
/// before it is used; problems are <see cref="ModelFormatException"/>s naming the file.</summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const int Q8Block = 32;          // values per Q8_0 block
    public const int Q8BlockBytes = 34;     // f16 scale + 32 int8
    private const uint Magic = 0x46554747;  // "GGUF"
    private const int MaxTensors = 1 << 16, MaxKeys = 1 << 16, MaxString = 1 << 20;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly Dictionary<string, GgufTensor> _tensors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, object> _metadata = new(StringComparer.Ordinal);

    public string Path { get; }
    public long Length { get; }
    public uint Version { get; private set; }
    public IReadOnlyDictionary<string, object> Metadata => _metadata;
    public IReadOnlyCollection<GgufTensor> Tensors => _tensors.Values;

    private GgufFile(string path)
    {
        Path = path;
        Length = new FileInfo(path).Length;
        if (Length < 24) throw new ModelFormatException(path, $"truncated GGUF file: {Length} bytes");
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
    }

    public static GgufFile Open(string path)
    {
        var f = new GgufFile(path);
        try
        {
            f.Parse();
            return f;
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    /// <summary>The single *.gguf file of a model folder, or null when it has none.</summary>
    public static string? FindIn(string directory)
    {
        if (!Directory.Exists(directory)) return null;
        var files = Directory.GetFiles(directory, "*.gguf");
        if (files.Length > 1) throw new ModelFormatException(directory, $"{files.Length} .gguf files: a model folder holds one");
        return files.Length == 1 ? files[0] : null;
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public GgufTensor Tensor(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new ModelFormatException(Path, $"tensor '{name}' is missing");

    public byte* Pointer(GgufTensor t) => _base + t.Offset;

    public string? String(string key) => _metadata.TryGetValue(key, out var v) ? v as string : null;

    /// <summary>An integer metadata value (any integer type), or null.</summary>
    public long? Integer(string key) => _metadata.TryGetValue(key, out var v) && v is long l ? l : null;

    /// <summary>A number (integer or float), or null.</summary>
    public double? Number(string key) => _metadata.TryGetValue(key, out var v) ? v switch { long l => l, double d => d, _ => null } : null;

    private void Parse()
    {
        long at = 0;
        if (U32(ref at) != Magic) throw Bad("not a GGUF file (bad magic)");
        Version = U32(ref at);
        if (Version is not (2 or 3)) throw Bad($"GGUF version {Version} is not supported (2 or 3)");
        ulong tensorCount = U64(ref at), keyCount = U64(ref at);
        if (tensorCount > MaxTensors) throw Bad($"{tensorCount} tensors exceeds the limit of {MaxTensors}");
        if (keyCount > MaxKeys) throw Bad($"{keyCount} metadata keys exceeds the limit of {MaxKeys}");
        for (ulong i = 0; i < keyCount; i++)
        {
            string key = Str(ref at);
            uint type = U32(ref at);
            _metadata[key] = Value(ref at, type, key);
        }
        long alignment = Integer("general.alignment") ?? 32;
        if (alignment is < 1 or > 1 << 20 || (alignment & (alignment - 1)) != 0) throw Bad($"general.alignment {alignment} is not a power of two");
        var infos = new List<(string Name, long[] Dims, uint Type, ulong Offset)>();
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = Str(ref at);
            uint nd = U32(ref at);
            if (nd is < 1 or > 4) throw Bad($"tensor '{name}' has {nd} dimensions");
            var dims = new long[nd];
            for (int d = 0; d < nd; d++)
            {
                ulong v = U64(ref at);
                if (v is 0 or > int.MaxValue) throw Bad($"tensor '{name}' has dimension {v}");
                dims[d] = (long)v;
            }
            infos.Add((name, dims, U32(ref at), U64(ref at)));
        }
        long dataStart = (at + alignment - 1) / alignment * alignment;
        foreach (var (name, dims, type, offset) in infos)
        {
            if (!Enum.IsDefined((GgufType)type)) throw Bad($"tensor '{name}': ggml type {type} is not supported (F32, F16, BF16, Q8_0)");
            var t = (GgufType)type;
            long count = dims.Aggregate(1L, (a, b) => checked(a * b));
            if (t == GgufType.Q8_0 && dims[0] % Q8Block != 0) throw Bad($"tensor '{name}': Q8_0 rows of {dims[0]} values are not whole blocks");
            long bytes = t switch { GgufType.F32 => count * 4, GgufType.Q8_0 => count / Q8Block * Q8BlockBytes, _ => count * 2 };
            if (offset > (ulong)(Length - dataStart) || bytes > Length - dataStart - (long)offset)
                throw Bad($"tensor '{name}' ({bytes} bytes at data offset {offset}) runs past the end of the file");
            if (!_tensors.TryAdd(name, new GgufTensor(name, dims, t, dataStart + (long)offset, bytes))) throw Bad($"tensor '{name}' appears twice");
        }
    }

    private object Value(ref long at, uint type, string key) => type switch
    {
        0 => (long)Take(ref at, 1)[0],
        1 => (long)(sbyte)Take(ref at, 1)[0],
        2 => (long)*(ushort*)Take(ref at, 2),
        3 => (long)*(short*)Take(ref at, 2),
        4 => (long)U32(ref at),
        5 => (long)*(int*)Take(ref at, 4),
        6 => double.Parse((*(float*)Take(ref at, 4)).ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture),   // 1e-5f reads as 1e-5
        7 => Take(ref at, 1)[0] != 0,
        8 => Str(ref at),
        9 => SkipArray(ref at, key),
        10 => (long)U64(ref at),
        11 => *(long*)Take(ref at, 8),
        12 => *(double*)Take(ref at, 8),
        _ => throw Bad($"metadata '{key}' has value type {type}"),
    };

    /// <summary>Steps over an array, returning its length.</summary>
    private object SkipArray(ref long at, string key)
    {
        uint elem = U32(ref at);
        ulong n = U64(ref at);
        if (n > (ulong)Length) throw Bad($"metadata '{key}': array of {n} elements is longer than the file");
        int size = elem switch { 0 or 1 or 7 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, 10 or 11 or 12 => 8, _ => 0 };
        if (size > 0)
        {
            if ((ulong)(Length - at) / (ulong)size < n) throw Bad($"metadata '{key}' runs past the end of the file");
            at += (long)n * size;
        }
        else if (elem == 8)
            for (ulong i = 0; i < n; i++) Str(ref at);
        else throw Bad($"metadata '{key}': arrays of type {elem} are not supported");
        return (long)n;
    }

    private byte* Take(ref long at, long n)
    {
        if (n < 0 || n > Length - at) throw Bad($"truncated at byte {at}");
        byte* p = _base + at;
        at += n;
        return p;
    }

    private uint U32(ref long at) => *(uint*)Take(ref at, 4);
    private ulong U64(ref long at) => *(ulong*)Take(ref at, 8);

    private string Str(ref long at)
    {
        ulong n = U64(ref at);
        if (n > MaxString) throw Bad($"a string of {n} bytes at byte {at} exceeds the limit of {MaxString}");
        byte* p = Take(ref at, (long)n);
        try { return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(p, (int)n); }
        catch (DecoderFallbackException) { throw Bad($"a string at byte {at - (long)n} is not valid UTF-8"); }
    }

    private ModelFormatException Bad(string problem) => new(Path, problem);

    public void Dispose()
    {
        if (_base != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view.Dispose();
        _map.Dispose();
    }
}
