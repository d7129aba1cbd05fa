# Sourced by the scripts: lets Open MPI run as root and with more ranks than cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Shared-memory transport only: nothing leaves the machine, and no probing of network devices.
export OMPI_MCA_btl=self,vader
