// Python binding of the whole-model inference engine (engine.h), built from the tensors of
// pack_engine() (equipot/model/inference.py; engine_tensors.h). The TorchScript class and
// operator of the metatomic export are a library of their own (engine_library.cpp).

#include <torch/extension.h>

#include <optional>

#include "engine_tensors.h"

namespace py = pybind11;
using at::Tensor;

void register_inference(py::module& m) {
  // a kept forward pass (InferenceEngine::forward), handed back to backward()
  py::class_<equipot::Pass, std::shared_ptr<equipot::Pass>>(m, "EnginePass");
  py::class_<equipot::InferenceEngine>(m, "InferenceEngine")
      .def("run",
           [](equipot::InferenceEngine& e, Tensor vectors, Tensor neighbors, Tensor counts,
              Tensor species, bool gradient, bool features) {
             return e.run(vectors, neighbors, counts, species, gradient, nullptr, features);
           },
           py::arg("vectors"), py::arg("neighbors"), py::arg("counts"), py::arg("species"),
           py::arg("gradient"), py::arg("features") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("forward",
           [](equipot::InferenceEngine& e, Tensor vectors, Tensor neighbors, Tensor counts,
              Tensor species) {
             std::shared_ptr<equipot::Pass> pass;
             std::vector<Tensor> out;
             {
               py::gil_scoped_release release;
               out = e.forward(pass, vectors, neighbors, counts, species);
             }
             return py::make_tuple(out[0], out[1], pass);
           },
           py::arg("vectors"), py::arg("neighbors"), py::arg("counts"), py::arg("species"))
      .def("ceiling_holds", &equipot::InferenceEngine::ceiling_holds, py::arg("vectors"),
           py::arg("neighbors"), py::arg("counts"), py::arg("species"),
           py::call_guard<py::gil_scoped_release>())
      .def("backward",
           [](equipot::InferenceEngine& e, const std::shared_ptr<equipot::Pass>& pass,
              std::optional<Tensor> g_last) {
             return e.backward(pass, g_last.value_or(Tensor()));
           },
           py::arg("pass"), py::arg("g_last") = py::none(),
           py::call_guard<py::gil_scoped_release>());
  // The members of a committee on one graph: member k reads vectors[k] (the same tensor for
  // all where they share a radial floor). With more than one intra-op thread the members run
  // side by side, each on one thread (an engine's operations inside run serially); a small
  // system's pass is a fixed sequence of small operations that one thread cannot hide.
  m.def(
      "run_members",
      [](const std::vector<equipot::InferenceEngine*>& engines, const std::vector<Tensor>& vectors,
         Tensor neighbors, Tensor counts, Tensor species, bool gradient, bool features) {
        TORCH_CHECK(engines.size() == vectors.size(), "one vectors tensor per engine");
        std::vector<std::vector<Tensor>> out(engines.size());
        {
          py::gil_scoped_release release;
          at::parallel_for(0, int64_t(engines.size()), 1, [&](int64_t a, int64_t b) {
            for (int64_t k = a; k < b; ++k)
              out[k] = engines[k]->run(vectors[k], neighbors, counts, species, gradient,
                                       nullptr, features);
          });
        }
        return out;
      },
      py::arg("engines"), py::arg("vectors"), py::arg("neighbors"), py::arg("counts"),
      py::arg("species"), py::arg("gradient"), py::arg("features") = false);
  m.def("engine_from_tensors", &equipot::engine_from_tensors);
  m.attr("ENGINE_FORMAT") = equipot::kEngineFormat;
}
