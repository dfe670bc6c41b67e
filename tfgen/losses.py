"""GAN and VAE losses as plain functions returning per-example losses of shape [batch].

The models average them over the *global* batch, so gradients are the same on one device or
many. A GAN loss is a pair `(d_loss(real_logits, fake_logits, label_smoothing),
g_loss(fake_logits))`, looked up with `gan_loss(name)`; a VAE likelihood is a pair
(negative log-likelihood, decoder outputs -> images) in `LIKELIHOODS`.
"""

import tensorflow as tf


def _flat(logits):
    return tf.reshape(tf.cast(logits, tf.float32), [tf.shape(logits)[0], -1])


def non_saturating_d(real_logits, fake_logits, label_smoothing=0.0):
    """Goodfellow et al. 2014, the D loss: -log D(x) - log(1 - D(G(z))).

    One-sided label smoothing (Salimans et al. 2016) trains D towards 1 - label_smoothing
    on real images only, so D is never rewarded for being confident on fakes.
    """
    real = _flat(real_logits)
    fake = _flat(fake_logits)
    real_loss = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(real), 1.0 - label_smoothing), logits=real
    )
    fake_loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(fake), logits=fake)
    return tf.reduce_mean(real_loss, axis=1) + tf.reduce_mean(fake_loss, axis=1)


def non_saturating_g(fake_logits):
    """Goodfellow et al. 2014, the non-saturating G loss: -log D(G(z))."""
    fake = _flat(fake_logits)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(fake), logits=fake)
    return tf.reduce_mean(loss, axis=1)


def hinge_d(real_logits, fake_logits, label_smoothing=0.0):
    """Lim & Ye 2017 / Miyato et al. 2018, the D loss: relu(1 - D(x)) + relu(1 + D(G(z))).

    Label smoothing lowers the real margin to 1 - label_smoothing.
    """
    real = _flat(real_logits)
    fake = _flat(fake_logits)
    return tf.reduce_mean(tf.nn.relu(1.0 - label_smoothing - real), axis=1) + tf.reduce_mean(
        tf.nn.relu(1.0 + fake), axis=1
    )


def hinge_g(fake_logits):
    """Lim & Ye 2017, the G loss: -D(G(z))."""
    return -tf.reduce_mean(_flat(fake_logits), axis=1)


def least_squares_d(real_logits, fake_logits, label_smoothing=0.0):
    """Mao et al. 2017 (LSGAN), the D loss: 0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2."""
    real = _flat(real_logits)
    fake = _flat(fake_logits)
    return 0.5 * tf.reduce_mean(tf.square(real - (1.0 - label_smoothing)), axis=1) + 0.5 * tf.reduce_mean(
        tf.square(fake), axis=1
    )


def least_squares_g(fake_logits):
    """Mao et al. 2017 (LSGAN), the G loss: 0.5 (D(G(z)) - 1)^2."""
    return 0.5 * tf.reduce_mean(tf.square(_flat(fake_logits) - 1.0), axis=1)


def wasserstein_d(real_logits, fake_logits, label_smoothing=0.0):
    """Arjovsky et al. 2017, the critic loss: D(G(z)) - D(x) (no smoothing: it is not a classifier)."""
    return tf.reduce_mean(_flat(fake_logits), axis=1) - tf.reduce_mean(_flat(real_logits), axis=1)


def wasserstein_g(fake_logits):
    """Arjovsky et al. 2017, the generator loss: -D(G(z))."""
    return -tf.reduce_mean(_flat(fake_logits), axis=1)


def gradient_penalty(critic, real, fake, epsilon):
    """Gulrajani et al. 2017 (WGAN-GP): (||grad_x D(x_hat)||_2 - 1)^2 per example.

    x_hat = epsilon * real + (1 - epsilon) * fake, `epsilon` [B] drawn from U(0, 1).
    `critic` maps images to logits [B, 1].
    """
    epsilon = tf.reshape(tf.cast(epsilon, real.dtype), [-1] + [1] * (len(real.shape) - 1))
    interpolates = epsilon * real + (1.0 - epsilon) * fake
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        logits = critic(interpolates)
    gradients = tf.reshape(tf.cast(tape.gradient(logits, interpolates), tf.float32), [tf.shape(real)[0], -1])
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=1) + 1e-12)
    return tf.square(norms - 1.0)


GAN_LOSSES = {
    "non_saturating": (non_saturating_d, non_saturating_g),
    "hinge": (hinge_d, hinge_g),
    "least_squares": (least_squares_d, least_squares_g),
    "wasserstein": (wasserstein_d, wasserstein_g),
}


def gan_loss(name):
    """(d_loss, g_loss) for a loss name in GAN_LOSSES."""
    return GAN_LOSSES[name]


def kl_standard_normal(mean, log_var):
    """Kingma & Welling 2014, the analytic KL(N(mean, exp(log_var)) || N(0, I)) per example."""
    mean = tf.cast(mean, tf.float32)
    log_var = tf.cast(log_var, tf.float32)
    return -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=-1)


def bernoulli_nll(images, logits):
    """Kingma & Welling 2014, Bernoulli decoder: sigmoid cross-entropy summed over pixels.

    `images` are in [-1, 1] and are read as probabilities (x + 1) / 2.
    """
    targets = (tf.cast(images, tf.float32) + 1.0) / 2.0
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.reshape(loss, [tf.shape(loss)[0], -1]), axis=1)


def gaussian_nll(images, outputs):
    """Unit-variance Gaussian decoder with mean tanh(outputs): 0.5 * squared error summed over pixels."""
    error = tf.cast(images, tf.float32) - tf.tanh(tf.cast(outputs, tf.float32))
    return 0.5 * tf.reduce_sum(tf.reshape(tf.square(error), [tf.shape(error)[0], -1]), axis=1)


def edge_difference(images, reconstructions):
    """The gradient difference loss (Mathieu, Couprie & LeCun 2016, alpha 1) per example:
    |d(x) - d(x')| summed over every pixel's horizontal and vertical neighbour difference d.

    Why: a squared-error decoder that is unsure where an edge lies draws the mean of the
    candidates, a grey ramp. This term costs every neighbour difference the reconstruction
    gets wrong, a blurred edge and an invented texture alike, and nothing for a constant
    offset (the squared error's business). On the Pokemon VAE it gave crisp silhouettes with
    smooth insides (README).
    """
    error = tf.cast(images, tf.float32) - tf.cast(reconstructions, tf.float32)
    rows = tf.abs(error[:, 1:] - error[:, :-1])  # d(x) - d(x') = d(x - x'): differences of the error
    columns = tf.abs(error[:, :, 1:] - error[:, :, :-1])
    batch = tf.shape(error)[0]
    return tf.reduce_sum(tf.reshape(rows, [batch, -1]), 1) + tf.reduce_sum(tf.reshape(columns, [batch, -1]), 1)


# likelihood name -> (negative log-likelihood(images, decoder outputs), decoder outputs -> images)
LIKELIHOODS = {
    "bernoulli": (bernoulli_nll, lambda outputs: 2.0 * tf.sigmoid(tf.cast(outputs, tf.float32)) - 1.0),
    "gaussian": (gaussian_nll, lambda outputs: tf.tanh(tf.cast(outputs, tf.float32))),
}
