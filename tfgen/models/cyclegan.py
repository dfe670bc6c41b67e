"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation between two domains.

Two generators, G: A -> B and F: B -> A, each judged by a PatchGAN discriminator of its
target domain with the least-squares GAN loss, and tied together by cycle consistency
(F(G(a)) ~ a, G(F(b)) ~ b, L1, weight `cycle_weight`) and, optionally, identity
(G(b) ~ b, F(a) ~ a, weight `identity_weight` times `cycle_weight`), which keeps colours
from drifting. The discriminators see fakes from a pool of the last `pool_size` ones
(Shrivastava et al. 2017), so they do not chase the generators' latest step.

A model of two domains: the training script feeds it (images A, images B) pairs of
unpaired batches (`domains = 2`), and it draws translation grids instead of samples from
a latent (`pictures = ("translations",)`).
"""

import keras
import tensorflow as tf

from tfgen import layers, losses
from tfgen.models.base import GenerativeModel
from tfgen.models.registry import register


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def build_resnet_generator(image_shape, width, residual_blocks, name):
    """The paper's ResNet generator: c7s1-w, d2w, d4w, R4w x n, u2w, uw, c7s1-C (tanh).

    Instance norm after every convolution but the last; reflection padding before the 7x7
    convolutions and inside the residual blocks. Needs a size divisible by 4.
    """
    channels = image_shape[-1]
    inputs = keras.Input(image_shape)
    x = layers.ReflectionPadding2D(3)(inputs)
    x = keras.layers.Conv2D(width, 7, use_bias=False, kernel_initializer=_init())(x)
    x = keras.layers.ReLU()(layers.instance_norm()(x))
    for factor in (2, 4):
        x = keras.layers.Conv2D(width * factor, 3, 2, "same", use_bias=False, kernel_initializer=_init())(x)
        x = keras.layers.ReLU()(layers.instance_norm()(x))
    for _ in range(residual_blocks):
        y = layers.ReflectionPadding2D(1)(x)
        y = keras.layers.Conv2D(width * 4, 3, use_bias=False, kernel_initializer=_init())(y)
        y = keras.layers.ReLU()(layers.instance_norm()(y))
        y = layers.ReflectionPadding2D(1)(y)
        y = layers.instance_norm()(keras.layers.Conv2D(width * 4, 3, use_bias=False, kernel_initializer=_init())(y))
        x = keras.layers.Add()([x, y])
    for factor in (2, 1):
        x = keras.layers.Conv2DTranspose(width * factor, 3, 2, "same", use_bias=False, kernel_initializer=_init())(x)
        x = keras.layers.ReLU()(layers.instance_norm()(x))
    x = layers.ReflectionPadding2D(3)(x)
    x = keras.layers.Conv2D(channels, 7, kernel_initializer=_init())(x)
    outputs = keras.layers.Activation("tanh", dtype="float32")(x)  # float32 output under mixed precision
    return keras.Model(inputs, outputs, name=name)


def build_patch_discriminator(image_shape, width, name, stride_layers=3):
    """PatchGAN: C64-C128-C256 (stride 2), C512 (stride 1), then a 1-channel map of logits,
    one per overlapping patch (70x70 at 256 px). No norm on the first layer, instance norm after."""
    stack = [keras.Input(image_shape)]
    for i in range(stride_layers + 1):
        stride = 2 if i < stride_layers else 1
        stack.append(keras.layers.Conv2D(width * 2 ** min(i, 3), 4, stride, "same", kernel_initializer=_init()))
        if i > 0:
            stack.append(layers.instance_norm())
        stack.append(keras.layers.LeakyReLU(0.2))
    stack.append(keras.layers.Conv2D(1, 4, 1, "same", kernel_initializer=_init(), dtype="float32"))
    return keras.Sequential(stack, name=name)


class ImagePool:
    """A buffer of past fakes (Shrivastava et al. 2017, as in the CycleGAN code).

    `query(fakes)` returns, per image: while the pool fills, the image itself (and stores it);
    then with probability 1/2 the image itself, else a random stored fake, which the new one
    replaces. The buffer and its fill count are model variables, so they are checkpointed
    and a resumed run continues with the same history. Under a distribution strategy each
    replica keeps its own pool (on-read variables); a checkpoint keeps the first replica's,
    which every replica starts from on a resume, so a resume with several replicas is not
    bit-exact (with one, it is).
    """

    def __init__(self, model, name, size, image_shape):
        self.size = size
        self.images = keras.Variable(
            tf.zeros([max(size, 1), *image_shape]),
            trainable=False,
            name=f"{name}_images",
            synchronization="on_read",
            aggregation="only_first_replica",
        )
        self.count = keras.Variable(
            0,
            dtype="int32",
            trainable=False,
            name=f"{name}_count",
            synchronization="on_read",
            aggregation="only_first_replica",
        )
        setattr(model, f"_{name}_images", self.images)
        setattr(model, f"_{name}_count", self.count)

    def query(self, fakes, seed):
        if self.size == 0:
            return fakes
        fakes = tf.cast(fakes, self.images.dtype)
        n = tf.shape(fakes)[0]
        coins = tf.random.stateless_uniform([n], seed=seed)
        slots = tf.random.stateless_uniform([n], seed=seed + 1, maxval=self.size, dtype=tf.int32)

        def one(i, out, pool, count):
            """Image i in turn (a while_loop: Keras traces train_step without AutoGraph)."""
            fake = fakes[i]
            filling = count < self.size
            swap = tf.logical_and(tf.logical_not(filling), coins[i] >= 0.5)
            slot = tf.where(filling, count, slots[i])
            out = out.write(i, tf.where(swap, pool[slot], fake))
            stored = tf.tensor_scatter_nd_update(pool, [[slot]], fake[None])
            pool = tf.where(tf.logical_or(filling, swap), stored, pool)
            return i + 1, out, pool, count + tf.cast(filling, tf.int32)

        _, out, pool, count = tf.while_loop(
            lambda i, *_: i < n,
            one,
            (tf.constant(0), tf.TensorArray(fakes.dtype, size=n), self.images.value, self.count.value),
        )
        self.images.assign(pool)
        self.count.assign(count)
        return out.stack()


@register("cyclegan")
class CycleGAN(GenerativeModel):
    """Two generators and two PatchGAN discriminators; `translate(images, "a2b" | "b2a")`.

    Args:
        image_shape: (size, size, channels) of both domains; size divisible by 4.
        width: channels of the generators' first convolution (the paper's 64).
        residual_blocks: residual blocks in each generator; 0 picks the paper's rule (9 at
            256 px, 6 at 128 px) continued downwards (4 at 64 px, 2 below).
        d_width: channels of the discriminators' first convolution (64).
        cycle_weight: lambda of the cycle-consistency L1 loss (10).
        identity_weight: the identity L1 loss's weight as a fraction of lambda (0.5; 0 turns
            it off, and with it the two extra generator passes).
        pool_size: past fakes each discriminator draws from (50; 0 disables the pool).
        seed: seeds the pool's draws inside `train_step` (state saved with checkpoints).
    """

    optimizer_names = {
        "g_optimizer": ("generator_ab", "generator_ba"),
        "d_optimizer": ("discriminator_a", "discriminator_b"),
    }
    metric_names = ("d_a_loss", "d_b_loss", "g_ab_loss", "g_ba_loss", "cycle_loss", "identity_loss")
    domains = 2
    samples_from_noise = False
    translates = True
    pictures = ("translations",)
    export_networks = ("generator_ab", "generator_ba")

    def __init__(
        self,
        image_shape=(64, 64, 3),
        width: int = 64,
        residual_blocks: int = 0,
        d_width: int = 64,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(image_shape, 0, seed, self.metric_names, **kwargs)
        size = self.image_shape[0]
        if size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two stride-2 downsamplings), got {size}")
        for name, value in (("width", width), ("d_width", d_width)):
            if value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
        for name, value in (("residual_blocks", residual_blocks), ("pool_size", pool_size)):
            if value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value}")
        if cycle_weight < 0 or identity_weight < 0:
            raise ValueError(f"cycle_weight and identity_weight must be >= 0, got {cycle_weight}, {identity_weight}")
        self.width = width
        self.residual_blocks = residual_blocks
        self.d_width = d_width
        self.cycle_weight = cycle_weight
        self.identity_weight = identity_weight
        self.pool_size = pool_size
        blocks = residual_blocks or self.default_blocks(size)
        self.generator_ab = build_resnet_generator(self.image_shape, width, blocks, "generator_ab")
        self.generator_ba = build_resnet_generator(self.image_shape, width, blocks, "generator_ba")
        self.discriminator_a = build_patch_discriminator(self.image_shape, d_width, "discriminator_a")
        self.discriminator_b = build_patch_discriminator(self.image_shape, d_width, "discriminator_b")
        self.pool_a = ImagePool(self, "pool_a", pool_size, self.image_shape)
        self.pool_b = ImagePool(self, "pool_b", pool_size, self.image_shape)
        self.built = True

    @staticmethod
    def default_blocks(size):
        """9 at >= 256 px and 6 at 128 px (the paper), 4 at 64 px, 2 below."""
        return 9 if size >= 256 else 6 if size >= 128 else 4 if size >= 64 else 2

    def translate(self, images, direction="a2b", training=False):
        """Images of one domain in [-1, 1] -> the other domain's ("a2b" or "b2a")."""
        if direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        network = self.generator_ab if direction == "a2b" else self.generator_ba
        return network(images, training=training)

    def call(self, images, training=False):
        """A -> B (the model's main direction)."""
        return self.translate(images, "a2b", training=training)

    def generate(self, images, labels=None, training=False):
        return self.translate(images, "a2b", training=training)

    def train_step(self, data):
        """One update of both generators, then of both discriminators (on pooled fakes)."""
        (real_a, _), (real_b, _) = data
        with tf.GradientTape() as tape:
            fake_b = self.generator_ab(real_a, training=True)
            fake_a = self.generator_ba(real_b, training=True)
            cycled_a = self.generator_ba(fake_b, training=True)
            cycled_b = self.generator_ab(fake_a, training=True)
            g_ab = 2.0 * losses.least_squares_g(self.discriminator_b(fake_b, training=True))
            g_ba = 2.0 * losses.least_squares_g(self.discriminator_a(fake_a, training=True))
            cycle = _l1(cycled_a, real_a) + _l1(cycled_b, real_b)
            identity = tf.zeros_like(cycle)
            if self.identity_weight:
                identity = _l1(self.generator_ab(real_b, training=True), real_b) + _l1(
                    self.generator_ba(real_a, training=True), real_a
                )
            g_loss = self.global_mean(g_ab + g_ba + self.cycle_weight * (cycle + self.identity_weight * identity))
        self.apply_update("g_optimizer", tape, g_loss)

        seed = self.next_seed()
        pooled_a = self.pool_a.query(tf.stop_gradient(fake_a), seed)
        pooled_b = self.pool_b.query(tf.stop_gradient(fake_b), seed + 2)
        with tf.GradientTape() as tape:
            # least_squares_d is 0.5 [(D(b) - 1)^2 + D(G(a))^2]: the paper's objective halved
            # "to slow down the rate at which D learns relative to G"
            d_a = losses.least_squares_d(
                self.discriminator_a(real_a, training=True), self.discriminator_a(pooled_a, training=True)
            )
            d_b = losses.least_squares_d(
                self.discriminator_b(real_b, training=True), self.discriminator_b(pooled_b, training=True)
            )
            d_loss = self.global_mean(d_a + d_b)  # two independent discriminators
        self.apply_update("d_optimizer", tape, d_loss)
        return self.update_trackers(
            {
                "d_a_loss": self.global_mean(d_a),
                "d_b_loss": self.global_mean(d_b),
                "g_ab_loss": self.global_mean(g_ab),
                "g_ba_loss": self.global_mean(g_ba),
                "cycle_loss": self.global_mean(cycle),
                "identity_loss": self.global_mean(identity),
            }
        )

    def export_endpoints(self):
        spec = [tf.TensorSpec([None, *self.image_shape], tf.float32, name="images")]
        return {
            "a_to_b": (lambda images: self.translate(images, "a2b"), spec),
            "b_to_a": (lambda images: self.translate(images, "b2a"), spec),
        }

    def get_config(self):
        config = {
            **super().get_config(),
            "width": self.width,
            "residual_blocks": self.residual_blocks,
            "d_width": self.d_width,
            "cycle_weight": self.cycle_weight,
            "identity_weight": self.identity_weight,
            "pool_size": self.pool_size,
        }
        config.pop("latent_dim")
        return config


def _l1(x, y):
    """Per-example mean absolute error."""
    diff = tf.cast(x, tf.float32) - tf.cast(y, tf.float32)
    return tf.reduce_mean(tf.abs(tf.reshape(diff, [tf.shape(diff)[0], -1])), axis=1)
