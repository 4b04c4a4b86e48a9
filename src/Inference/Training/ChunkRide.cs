using Loom.Inference.Kernels;

namespace Loom.Inference.Training;

/// <summary>The forward pass of one chunk of a training row (rows [R0, R1), through every layer), either riding along with
/// an inference forward pass (each of its products computed in the same region as the pass's product of the same
/// weights: <see cref="IProductRider"/>) or on its own. It walks layer by layer, stage by stage: when the pass reaches
/// the weights of the chunk's next stage, the chunk runs that stage's own work and hands its rows to the product.
/// <see cref="Complete"/> runs whatever the pass did not carry (all of it, on its own) and the last residual. The values
/// are the same either way (<see cref="TrainingModel"/>).</summary>
internal sealed class ChunkRide : IProductRider
{
    private readonly TrainingModel _m;
    private int _layer, _stage;   // the next stage to run
    private bool _completed;

    public int R0 { get; private set; }
    public int R1 { get; private set; }
    public int Rows => R1 - R0;
    /// <summary>Products that rode along with an inference pass.</summary>
    public int Carried { get; private set; }
    public bool Done => _layer == _m.Layers;

    /// <summary>The model's one chunk (reused: a chunked forward allocates nothing per chunk).</summary>
    public ChunkRide(TrainingModel m)
    {
        _m = m;
        _completed = true;
    }

    /// <summary>The chunk has been completed (or never handed out).</summary>
    public bool Completed => _completed;

    /// <summary>Makes this the chunk of rows [r0, r1), from its first layer.</summary>
    public ChunkRide For(int r0, int r1)
    {
        (R0, R1, _layer, _stage, _completed, Carried) = (r0, r1, 0, 0, false, 0);
        return this;
    }

    public RiderRows? Board(WeightMatrix first)
    {
        if (Done || !ReferenceEquals(first, _m.StageWeight(_layer, _stage))) return null;
        var p = Stage();
        Carried++;
        return p;
    }

    /// <summary>Starts the chunk again from its first layer (the pass it rode along with failed part-way, so a product
    /// may be incomplete): every activation of its rows is computed again from the embeddings.</summary>
    public void Restart()
    {
        if (_completed) throw new InvalidOperationException("the chunk is complete");
        _layer = _stage = 0;
    }

    /// <summary>Runs the stages the pass did not carry, each with its product on its own, and the last layer's residual.</summary>
    public void Complete()
    {
        if (_completed) throw new InvalidOperationException("the chunk is complete");
        while (!Done) _m.ProductOf(Stage());
        _m.FinishLayer(_m.Layers - 1, R0, R1);
        _m.ChunkDone(R1);
        _completed = true;
    }

    /// <summary>The work before the next stage's product (and the finished layer's residual before a layer's first stage).</summary>
    private RiderRows Stage()
    {
        if (_stage == 0 && _layer > 0) _m.FinishLayer(_layer - 1, R0, R1);
        var p = _m.ForwardStage(_layer, _stage, R0, R1);
        if (++_stage == TrainingModel.StagesPerLayer)
        {
            _stage = 0;
            _layer++;
        }
        return p;
    }
}
