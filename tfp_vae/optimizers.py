"""``FusedAdam``: Keras' Adam with each variable's update done by TensorFlow's fused kernel.

Keras 3's Adam builds every variable's update from about fifteen small TensorFlow ops (casts,
powers, the two moment updates, the step); on the small networks of this package, run without
XLA, those ops cost more than the matrix products of the step (``benchmarks/breakdown.py``: 2.5
of a 6 ms VAE step). TensorFlow's ``ResourceApplyAdam`` kernel performs the same update

    m <- m + (g - m) (1 - beta_1)
    v <- v + (g^2 - v) (1 - beta_2)
    x <- x - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

(Kingma and Ba, 2015, Algorithm 1 with the efficient form of section 2; the same formulas and
operation order as ``keras.optimizers.Adam``) in one op per variable. Keras has no fused
update of its own, so this class keeps everything of Keras' Adam (its variables, checkpoints,
learning-rate schedules, clipping, weight decay, distribution strategies) and only swaps the
per-variable arithmetic. It falls back to Keras' update for cases the kernel does not cover
(``amsgrad``, sparse gradients, other backends).
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfp_vae")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose dense updates run as one TensorFlow kernel per variable.

    Takes the arguments of ``keras.optimizers.Adam``; its checkpoints are interchangeable with
    Adam's (the same variables).
    """

    def update_step(self, gradient, variable, learning_rate):
        if (self.amsgrad or isinstance(gradient, tf.IndexedSlices)
                or keras.backend.backend() != "tensorflow"):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)  # as Keras: iterations counts finished steps
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        var = variable.value if isinstance(variable, keras.Variable) else variable
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.value.handle, v=v.value.handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))
