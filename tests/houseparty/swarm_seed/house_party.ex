# The seed's HouseParty as its authors wrote it for swarm: plain Elixir against the
# Swarm API only, with start_link workers and swarm's handoff callbacks. The test loads
# it onto the sidecars to show that swarm-written code runs there unchanged.
defmodule SwarmSeed.HouseParty do
  @rooms :house_party_rooms
  @people :house_party_people

  def add_rooms(rooms, max \\ 10) do
    Enum.each(rooms, fn room ->
      case Swarm.register_name({:room, room}, SwarmSeed.RoomWorker, :start_link, [room, max]) do
        {:ok, pid} -> Swarm.join(@rooms, pid)
        {:error, {:already_registered, _pid}} -> :ok
      end
    end)
  end

  def walk_into(room, people) when is_list(people) do
    Enum.reduce_while(people, :ok, fn person, :ok ->
      case walk_into(room, person) do
        :ok -> {:cont, :ok}
        error -> {:halt, error}
      end
    end)
  end

  def walk_into(room, person) do
    {:ok, pid} =
      Swarm.whereis_or_register_name({:person, person}, SwarmSeed.PersonWorker, :start_link, [person])

    Swarm.join(@people, pid)
    GenServer.call(pid, {:walk_into, room})
  end

  def dump do
    @rooms |> Swarm.multi_call({:dump}) |> Map.new()
  end

  def who_is_in(room), do: GenServer.call({:via, :swarm, {:room, room}}, :who_is_in)
  def where_is(person), do: GenServer.call({:via, :swarm, {:person, person}}, :where_is)
  def get_person_room_log(person), do: GenServer.call({:via, :swarm, {:person, person}}, :log)
end

defmodule SwarmSeed.RoomWorker do
  use GenServer

  def start_link(room, max), do: GenServer.start_link(__MODULE__, {room, max})

  @impl true
  def init({room, max}), do: {:ok, %{room: room, max: max, people: []}}

  @impl true
  def handle_call({:swarm, :begin_handoff}, _from, state), do: {:reply, {:resume, state}, state}

  def handle_call({:enter, person}, _from, state) do
    cond do
      person in state.people -> {:reply, :ok, state}
      length(state.people) >= state.max -> {:reply, {:error, :destination_full}, state}
      true -> {:reply, :ok, %{state | people: Enum.sort([person | state.people])}}
    end
  end

  def handle_call({:leave, person}, _from, state),
    do: {:reply, :ok, %{state | people: List.delete(state.people, person)}}

  def handle_call(:who_is_in, _from, state), do: {:reply, state.people, state}
  def handle_call({:dump}, _from, state), do: {:reply, {state.room, state.people}, state}

  @impl true
  def handle_cast({:swarm, :end_handoff, handed}, _state), do: {:noreply, handed}

  def handle_cast({:swarm, :resolve_conflict, other}, state),
    do: {:noreply, %{state | people: Enum.sort(Enum.uniq(state.people ++ other.people))}}

  @impl true
  def handle_info({:swarm, :die}, state), do: {:stop, :shutdown, state}
end

defmodule SwarmSeed.PersonWorker do
  use GenServer

  def start_link(person), do: GenServer.start_link(__MODULE__, person)

  @impl true
  def init(person), do: {:ok, %{person: person, room: nil, log: []}}

  @impl true
  def handle_call({:swarm, :begin_handoff}, _from, state), do: {:reply, {:resume, state}, state}

  def handle_call({:walk_into, room}, _from, %{room: room} = state), do: {:reply, :ok, state}

  def handle_call({:walk_into, room}, _from, state) do
    case GenServer.call({:via, :swarm, {:room, room}}, {:enter, state.person}) do
      :ok ->
        if state.room, do: GenServer.call({:via, :swarm, {:room, state.room}}, {:leave, state.person})
        {:reply, :ok, %{state | room: room, log: [{DateTime.utc_now(), room} | state.log]}}

      error ->
        {:reply, error, state}
    end
  end

  def handle_call(:where_is, _from, state), do: {:reply, state.room, state}
  def handle_call(:log, _from, state), do: {:reply, state.log, state}

  @impl true
  def handle_cast({:swarm, :end_handoff, handed}, _state), do: {:noreply, handed}
  def handle_cast({:swarm, :resolve_conflict, _other}, state), do: {:noreply, state}

  @impl true
  def handle_info({:swarm, :die}, state), do: {:stop, :shutdown, state}
end
