"""The book's chapter 5-8 code, as a reader would type it: the benchmark's reference rows.

Plain NumPy, written after ``common/layers.py``, ``common/functions.py``,
``common/gradient.py``, ``common/util.py``, ``ch05/two_layer_net.py``,
``common/multi_layer_net_extend.py``, ``ch07/simple_convnet.py`` and
``ch08/deep_convnet.py``, with one change the comparison needs: weights are
float32 (the book draws float64) so both sides do the same arithmetic; the
book's im2col still builds its float64 buffer. Not used by xpnet itself.
"""

from collections import OrderedDict

import numpy as np


def softmax(x):
    if x.ndim == 2:
        x = x.T
        x = x - np.max(x, axis=0)
        y = np.exp(x) / np.sum(np.exp(x), axis=0)
        return y.T
    x = x - np.max(x)
    return np.exp(x) / np.sum(np.exp(x))


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def numerical_gradient(f, x):
    """The book's element-by-element central difference, with np.nditer."""
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = float(tmp_val) + h
        fxh1 = f(x)
        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
        it.iternext()
    return grad


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.original_x_shape = self.dW = self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape  # tensors are flattened (common/layers.py)
        x = x.reshape(x.shape[0], -1)
        self.x = x
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        return (self.y - self.t) / batch_size


class BatchNormalization:
    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.input_shape = None
        self.running_mean, self.running_var = running_mean, running_var
        self.batch_size = self.xc = self.std = self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        out = self.__forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def __forward(self, x, train_flg):
        if self.running_mean is None:
            N, D = x.shape
            self.running_mean = np.zeros(D, dtype=x.dtype)
            self.running_var = np.zeros(D, dtype=x.dtype)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc, self.xn, self.std = xc, xn, std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / np.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size
        self.dgamma, self.dbeta = dgamma, dbeta
        return dx.reshape(*self.input_shape)


class MultiLayerNetExtend:
    """ReLU, He initialisation; with ``use_batchnorm=False`` the book's MultiLayerNet."""

    def __init__(self, input_size, hidden_size_list, output_size, weight_decay_lambda=0,
                 use_batchnorm=False, dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        self.hidden_layer_num = len(hidden_size_list)
        self.weight_decay_lambda = weight_decay_lambda
        self.use_batchnorm = use_batchnorm
        sizes = [input_size] + list(hidden_size_list) + [output_size]
        self.params = {}
        for idx in range(1, len(sizes)):
            scale = np.sqrt(2.0 / sizes[idx - 1])
            self.params["W" + str(idx)] = (scale * rng.standard_normal(
                (sizes[idx - 1], sizes[idx]))).astype(dtype)
            self.params["b" + str(idx)] = np.zeros(sizes[idx], dtype=dtype)
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)],
                                                      self.params["b" + str(idx)])
            if self.use_batchnorm:
                self.params["gamma" + str(idx)] = np.ones(sizes[idx], dtype=dtype)
                self.params["beta" + str(idx)] = np.zeros(sizes[idx], dtype=dtype)
                self.layers["BatchNorm" + str(idx)] = BatchNormalization(
                    self.params["gamma" + str(idx)], self.params["beta" + str(idx)])
            self.layers["Activation_function" + str(idx)] = Relu()
        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)],
                                                  self.params["b" + str(idx)])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for key, layer in self.layers.items():
            if "Dropout" in key or "BatchNorm" in key:
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        y = self.predict(x, train_flg)
        weight_decay = 0
        for idx in range(1, self.hidden_layer_num + 2):
            W = self.params["W" + str(idx)]
            weight_decay += 0.5 * self.weight_decay_lambda * np.sum(W**2)
        return self.last_layer.forward(y, t) + weight_decay

    def gradient(self, x, t):
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = (self.layers["Affine" + str(idx)].dW
                                     + self.weight_decay_lambda * self.params["W" + str(idx)])
            grads["b" + str(idx)] = self.layers["Affine" + str(idx)].db
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads["gamma" + str(idx)] = self.layers["BatchNorm" + str(idx)].dgamma
                grads["beta" + str(idx)] = self.layers["BatchNorm" + str(idx)].dbeta
        return grads


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]
    col = col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]
    return img[:, :, pad:H + pad, pad:W + pad]


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.x = self.col = self.col_W = self.dW = self.db = None

    def forward(self, x):
        FN, C, FH, FW = self.W.shape
        N, C, H, W = x.shape
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)
        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T
        out = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)
        self.x, self.col, self.col_W = x, col, col_W
        return out

    def backward(self, dout):
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout)
        self.dW = self.dW.transpose(1, 0).reshape(FN, C, FH, FW)
        dcol = np.dot(dout, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.x = self.arg_max = None

    def forward(self, x):
        N, C, H, W = x.shape
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        arg_max = np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        out = out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)
        self.x, self.arg_max = x, arg_max
        return out

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape(dout.shape + (pool_size,))
        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class Dropout:
    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class ConvNet:
    """What SimpleConvNet and DeepConvNet share in the book (each copies it)."""

    def predict(self, x, train_flg=False):
        for layer in self.layers:
            if isinstance(layer, Dropout):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x, train_flg=True), t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads = {}
        for i, layer in enumerate(self.param_layers, 1):
            grads["W" + str(i)], grads["b" + str(i)] = layer.dW, layer.db
        return grads


class SimpleConvNet(ConvNet):
    def __init__(self, weight_init_std=0.01, dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": (weight_init_std * rng.standard_normal((30, 1, 5, 5))).astype(dtype),
            "b1": np.zeros(30, dtype=dtype),
            "W2": (weight_init_std * rng.standard_normal((4320, 100))).astype(dtype),
            "b2": np.zeros(100, dtype=dtype),
            "W3": (weight_init_std * rng.standard_normal((100, 10))).astype(dtype),
            "b3": np.zeros(10, dtype=dtype),
        }
        p = self.params
        self.param_layers = [Convolution(p["W1"], p["b1"]), Affine(p["W2"], p["b2"]),
                             Affine(p["W3"], p["b3"])]
        conv, affine1, affine2 = self.param_layers
        self.layers = [conv, Relu(), Pooling(2, 2, stride=2), affine1, Relu(), affine2]
        self.last_layer = SoftmaxWithLoss()


class DeepConvNet(ConvNet):
    def __init__(self, dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        pre_node_nums = np.array([1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4, 50])
        scales = np.sqrt(2.0 / pre_node_nums)
        convs = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]
        self.params, pre_channel = {}, 1
        for i, (fn, _) in enumerate(convs):
            self.params["W" + str(i + 1)] = (scales[i] * rng.standard_normal(
                (fn, pre_channel, 3, 3))).astype(dtype)
            self.params["b" + str(i + 1)] = np.zeros(fn, dtype=dtype)
            pre_channel = fn
        self.params["W7"] = (scales[6] * rng.standard_normal((64 * 4 * 4, 50))).astype(dtype)
        self.params["b7"] = np.zeros(50, dtype=dtype)
        self.params["W8"] = (scales[7] * rng.standard_normal((50, 10))).astype(dtype)
        self.params["b8"] = np.zeros(10, dtype=dtype)
        p = self.params
        self.param_layers = [Convolution(p["W" + str(i + 1)], p["b" + str(i + 1)], 1, pad)
                             for i, (_, pad) in enumerate(convs)]
        self.param_layers += [Affine(p["W7"], p["b7"]), Affine(p["W8"], p["b8"])]
        c = self.param_layers
        self.layers = [c[0], Relu(), c[1], Relu(), Pooling(2, 2, stride=2),
                       c[2], Relu(), c[3], Relu(), Pooling(2, 2, stride=2),
                       c[4], Relu(), c[5], Relu(), Pooling(2, 2, stride=2),
                       c[6], Relu(), Dropout(0.5), c[7], Dropout(0.5)]
        self.last_layer = SoftmaxWithLoss()


def adam_steps(network, x_train, t_train, steps, batch_size=100, lr=0.001):
    """``steps`` iterations of the book's Trainer with Adam (common/trainer.py, common/optimizer.py)."""
    m, v, it = {}, {}, 0
    train_size = x_train.shape[0]
    for _ in range(steps):
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        grads = network.gradient(x_batch, t_batch)
        if not m:
            for key, val in network.params.items():
                m[key], v[key] = np.zeros_like(val), np.zeros_like(val)
        it += 1
        lr_t = lr * np.sqrt(1.0 - 0.999**it) / (1.0 - 0.9**it)
        for key in network.params:
            m[key] += (1 - 0.9) * (grads[key] - m[key])
            v[key] += (1 - 0.999) * (grads[key]**2 - v[key])
            network.params[key] -= lr_t * m[key] / (np.sqrt(v[key]) + 1e-7)
        network.loss(x_batch, t_batch)  # the book's Trainer computes the loss again


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01,
                 dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": (weight_init_std * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (weight_init_std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.lastLayer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        y = np.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        def loss_w(W):
            return self.loss(x, t)
        return {key: numerical_gradient(loss_w, self.params[key]) for key in ("W1", "b1", "W2", "b2")}

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.lastLayer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {"W1": self.layers["Affine1"].dW, "b1": self.layers["Affine1"].db,
                "W2": self.layers["Affine2"].dW, "b2": self.layers["Affine2"].db}


def train_steps(network, x_train, t_train, steps, batch_size=100, learning_rate=0.1,
                train_loss_list=None):
    """``steps`` iterations of ch05/train_neuralnet.py's loop (its per-epoch accuracy aside)."""
    train_size = x_train.shape[0]
    losses = [] if train_loss_list is None else train_loss_list
    for _ in range(steps):
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch = x_train[batch_mask]
        t_batch = t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in network.params:
            network.params[key] -= learning_rate * grad[key]
        loss = network.loss(x_batch, t_batch)
        losses.append(loss)
    return losses
